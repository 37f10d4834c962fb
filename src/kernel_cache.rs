//! Where the GPU backends keep compiled kernels between runs.
//!
//! burn's CUDA and wgpu backends compile each kernel the first time a process launches it
//! (through NVRTC on CUDA, ~0.8 s a kernel; a DCGAN training step needs hundreds) and by
//! default forget them when the process ends, so every run pays minutes of cold start.
//! cubecl (the compiler under those backends) can keep compiled kernels and autotune
//! results on disk, but only when a `cubecl.toml` (or a `[cubecl]` table in `burn.toml`)
//! is found from the working directory upward, which is not the case for a `cats` binary
//! run from a data folder.
//!
//! [`configure`] closes that gap before the first GPU device is created:
//!
//! 1. `CATGAN_KERNEL_CACHE=off` leaves cubecl's own behaviour alone;
//!    `CATGAN_KERNEL_CACHE=DIR` keeps kernels in `DIR`.
//! 2. Otherwise a `cubecl.toml`/`burn.toml` above the working directory wins (the
//!    repository has one that keeps kernels under `target/`).
//! 3. Otherwise kernels go to the `kernels/` subfolder of catgan's cache folder
//!    ([`dcgan_data::cache_folder`]: `~/.cache/catgan/kernels` unless `CATGAN_CACHE_DIR`
//!    or `XDG_CACHE_HOME` says otherwise; README, "Cache folders").

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable that picks the kernel cache folder (`off` disables it).
pub const KERNEL_CACHE_ENV: &str = "CATGAN_KERNEL_CACHE";

/// Files cubecl reads its configuration from, searched from the working directory upward
/// (cubecl-runtime 0.10 `config/base.rs`).
const CUBECL_CONFIG_FILES: [&str; 4] = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];

/// Where compiled GPU kernels are kept, as decided by [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCache {
    /// catgan sets cubecl's compilation and autotune caches to this folder.
    Dir(PathBuf),
    /// A cubecl configuration file was found; cubecl follows it.
    ConfigFile(PathBuf),
    /// No cache set by catgan (`CATGAN_KERNEL_CACHE=off`, or no writable cache folder):
    /// kernels are compiled again in every process unless cubecl is configured otherwise.
    Off,
}

impl std::fmt::Display for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelCache::Dir(dir) => write!(f, "compiled kernels are kept in {}", dir.display()),
            KernelCache::ConfigFile(file) => {
                write!(f, "kernel caching as configured in {}", file.display())
            }
            KernelCache::Off => write!(
                f,
                "no kernel cache: every run compiles its GPU kernels again \
                 (set {KERNEL_CACHE_ENV}=DIR to keep them)"
            ),
        }
    }
}

/// The subfolder of catgan's cache folder ([`dcgan_data::cache_folder`]) that holds
/// compiled kernels.
pub const KERNELS_SUBFOLDER: &str = "kernels";

/// Decides where kernels go, from the value of [`KERNEL_CACHE_ENV`], the working directory
/// and catgan's cache folder, asked for only when needed (pure: [`configure`] passes the
/// real ones).
pub fn resolve(
    env_value: Option<&str>,
    cwd: &Path,
    cache_folder: impl FnOnce() -> Option<PathBuf>,
) -> KernelCache {
    match env_value.map(str::trim) {
        Some(v) if ["off", "0", "none", "false"].contains(&v.to_ascii_lowercase().as_str()) => {
            return KernelCache::Off
        }
        Some(v) if !v.is_empty() => return KernelCache::Dir(PathBuf::from(v)),
        _ => {}
    }
    for dir in cwd.ancestors() {
        for name in CUBECL_CONFIG_FILES {
            let file = dir.join(name);
            if file.is_file() {
                return KernelCache::ConfigFile(file);
            }
        }
    }
    match cache_folder() {
        Some(cache) => KernelCache::Dir(cache.join(KERNELS_SUBFOLDER)),
        None => KernelCache::Off,
    }
}

/// How hard cubecl searches for the fastest kernel of each operation and shape, the first
/// time it meets them (`--autotune`). Results are kept in the kernel cache, so this only
/// changes runs whose cache does not know the shapes yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autotune {
    /// cubecl's `minimal` level: shapes are grouped into coarser classes (fewer searches),
    /// and each search compiles and times only the first two candidate kernels that run,
    /// in cubecl's order of preference, 2 + 3 times each, instead of every candidate
    /// 3 + 10 times (a patch of ours to cubecl-runtime; patches/README.md). Compiling the
    /// other candidates was most of the cold start of a CPU Vulkan device.
    Fast,
    /// cubecl's default (`balanced`).
    Balanced,
    /// cubecl's `full` level: every shape searched on its own.
    Full,
}

impl std::str::FromStr for Autotune {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fast" | "minimal" => Ok(Autotune::Fast),
            "balanced" | "default" => Ok(Autotune::Balanced),
            "full" => Ok(Autotune::Full),
            other => Err(format!(
                "unknown autotune level '{other}': use fast, balanced or full"
            )),
        }
    }
}

impl std::fmt::Display for Autotune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Autotune::Fast => "fast",
            Autotune::Balanced => "balanced",
            Autotune::Full => "full",
        })
    }
}

impl Autotune {
    /// The environment variable cubecl reads its autotune level from.
    pub const ENV: &'static str = "CUBECL_AUTOTUNE_LEVEL";

    /// The level `cats` uses on `backend` when neither `--autotune` nor
    /// [`Autotune::ENV`] says: [`Autotune::Fast`] on the wgpu backends, where it was
    /// measured (on Mesa's lavapipe, tiny32's cold first step ≈ 38 → ≈ 12 s at the same
    /// training speed; docs/performance.md, change 13); `None` (cubecl's `balanced`) on
    /// CUDA, where it is not measured yet.
    pub fn default_for(
        backend: crate::backend::BackendKind,
        env_level: Option<&str>,
    ) -> Option<Self> {
        use crate::backend::BackendKind;
        if env_level.is_some_and(|v| !v.trim().is_empty()) {
            return None;
        }
        match backend {
            BackendKind::Wgpu | BackendKind::Vulkan | BackendKind::Metal => Some(Autotune::Fast),
            _ => None,
        }
    }
}

/// What a command asks of cubecl, besides where kernels go. Set with [`configure_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// The autotune effort (`None`: a cubecl configuration file's or `CUBECL_AUTOTUNE_LEVEL`'s,
    /// else cubecl's default).
    pub autotune: Option<Autotune>,
    /// Count compiled kernels and autotuned operations ([`crate::kernel_stats`]).
    pub count_kernels: bool,
    /// The command runs on CUDA, where compilations are counted through cubecl's
    /// compilation logger (on wgpu that logger would change how shaders are built).
    pub cuda: bool,
}

/// [`configure_with`] with default options.
pub fn configure() -> &'static KernelCache {
    configure_with(GpuOptions::default())
}

/// Applies [`resolve`]'s decision and `options` to cubecl's global configuration, once per
/// process, and returns the decision. Call it before the first GPU device is created (the
/// backend dispatch does, with default options; `cats` calls it first with the command's);
/// later calls return the first decision and ignore their options. If cubecl's
/// configuration was already read, it is left as it is (reported as [`KernelCache::Off`]
/// unless a file configured it).
pub fn configure_with(options: GpuOptions) -> &'static KernelCache {
    static DECISION: OnceLock<KernelCache> = OnceLock::new();
    DECISION.get_or_init(|| {
        let env_value = std::env::var(KERNEL_CACHE_ENV).ok();
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        // The first of catgan's cache folders where the kernels' subfolder can be made.
        let cache_folder = || {
            dcgan_data::cache_folder::cache_roots()
                .into_iter()
                .find(|root| std::fs::create_dir_all(root.join(KERNELS_SUBFOLDER)).is_ok())
        };
        let decision = resolve(env_value.as_deref(), &cwd, cache_folder);
        apply(decision, options)
    })
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn apply(mut decision: KernelCache, options: GpuOptions) -> KernelCache {
    use cubecl::config::{
        autotune::{AutotuneLevel, AutotuneLogLevel},
        cache::CacheConfig,
        compilation::CompilationLogLevel,
        CubeClRuntimeConfig, RuntimeConfig,
    };

    if let KernelCache::Dir(dir) = &decision {
        if std::fs::create_dir_all(dir).is_err() {
            // An unwritable cache must not stop training; it only costs compile time.
            decision = KernelCache::Off;
        }
    }
    let mut storage = CubeClRuntimeConfig::storage().lock();
    if storage.is_some() {
        return match decision {
            KernelCache::ConfigFile(_) => decision,
            _ => KernelCache::Off,
        };
    }
    // What cubecl would load by itself (a configuration file above the working directory,
    // else its defaults; then its CUBECL_* variables), plus what catgan sets.
    let mut config = match &decision {
        // catgan's folder replaces whatever a file says about caches.
        KernelCache::Dir(_) => CubeClRuntimeConfig::default(),
        KernelCache::ConfigFile(_) | KernelCache::Off => CubeClRuntimeConfig::from_current_dir(),
    }
    .override_from_env();
    if let KernelCache::Dir(dir) = &decision {
        config.compilation.cache = Some(CacheConfig::File(dir.clone()));
        config.autotune.cache = CacheConfig::File(dir.clone());
    }
    if let Some(effort) = options.autotune {
        config.autotune.level = match effort {
            Autotune::Fast => AutotuneLevel::Minimal,
            Autotune::Balanced => AutotuneLevel::Balanced,
            Autotune::Full => AutotuneLevel::Full,
        };
    }
    if options.count_kernels && crate::kernel_stats::install() {
        // Route cubecl's autotune lines (and, on CUDA, its compilation lines) to the `log`
        // crate, where the counter hears them. wgpu's compilations are counted from wgpu's
        // own records instead: cubecl's compilation logger would switch wgpu's debugging
        // flags on (kernel_stats's docs).
        if matches!(config.autotune.logger.level, AutotuneLogLevel::Disabled) {
            config.autotune.logger.level = AutotuneLogLevel::Minimal;
        }
        config.autotune.logger.log = Some(Default::default());
        if options.cuda {
            if matches!(
                config.compilation.logger.level,
                CompilationLogLevel::Disabled
            ) {
                config.compilation.logger.level = CompilationLogLevel::Basic;
            }
            config.compilation.logger.log = Some(Default::default());
        }
    }
    *storage = Some(std::sync::Arc::new(config));
    decision
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn apply(_decision: KernelCache, _options: GpuOptions) -> KernelCache {
    // CPU-only builds compile no kernels.
    KernelCache::Off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_autotune_is_the_default_on_wgpu_unless_cubecl_s_variable_says_otherwise() {
        use crate::backend::BackendKind;
        assert_eq!(
            Autotune::default_for(BackendKind::Wgpu, None),
            Some(Autotune::Fast)
        );
        assert_eq!(
            Autotune::default_for(BackendKind::Vulkan, Some(" ")),
            Some(Autotune::Fast)
        );
        assert_eq!(Autotune::default_for(BackendKind::Wgpu, Some("full")), None);
        assert_eq!(Autotune::default_for(BackendKind::Cuda, None), None);
        assert_eq!(Autotune::default_for(BackendKind::Flex, None), None);
    }

    #[test]
    fn autotune_levels_parse_by_our_names_and_cubecl_s() {
        for (text, level) in [
            ("fast", Autotune::Fast),
            ("Minimal", Autotune::Fast),
            ("balanced", Autotune::Balanced),
            (" default ", Autotune::Balanced),
            ("FULL", Autotune::Full),
        ] {
            assert_eq!(text.parse::<Autotune>(), Ok(level), "{text}");
            assert_eq!(level.to_string().parse::<Autotune>(), Ok(level));
        }
        let err = "turbo".parse::<Autotune>().unwrap_err();
        assert!(err.contains("turbo") && err.contains("fast, balanced or full"));
    }

    #[test]
    fn the_environment_variable_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cubecl.toml"), "").unwrap();
        assert_eq!(
            resolve(Some("/tmp/k"), dir.path(), || None),
            KernelCache::Dir("/tmp/k".into())
        );
        assert_eq!(resolve(Some("OFF"), dir.path(), || None), KernelCache::Off);
        assert_eq!(resolve(Some(" 0 "), dir.path(), || None), KernelCache::Off);
    }

    #[test]
    fn a_cubecl_config_above_the_working_directory_is_left_in_charge() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a").join("b");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(dir.path().join("burn.toml"), "").unwrap();
        let user = dir.path().join("user-cache");
        assert_eq!(
            resolve(None, &nested, || Some(user.clone())),
            KernelCache::ConfigFile(dir.path().join("burn.toml"))
        );
        // An empty variable means "not set".
        assert_eq!(
            resolve(Some(""), &nested, || Some(user.clone())),
            KernelCache::ConfigFile(dir.path().join("burn.toml"))
        );
    }

    #[test]
    fn otherwise_kernels_go_to_the_user_cache_folder() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user-cache").join("catgan");
        let decision = resolve(None, dir.path(), || Some(user.clone()));
        // A cubecl.toml in a parent of the temp folder would change the answer: only assert
        // where none exists, as on a user's machine.
        if !dir
            .path()
            .ancestors()
            .any(|d| CUBECL_CONFIG_FILES.iter().any(|n| d.join(n).is_file()))
        {
            assert_eq!(decision, KernelCache::Dir(user.join("kernels")));
            assert_eq!(resolve(None, dir.path(), || None), KernelCache::Off);
        }
        assert!(decision.to_string().contains("kernel"));
    }
}
