//! Where catgan caches things: one policy for every cache (README, "Cache folders").
//!
//! [`cache_roots`] lists catgan's cache folders, best first: the user's —
//! `$CATGAN_CACHE_DIR`, else `$XDG_CACHE_HOME/catgan`, else `$HOME/.cache/catgan` — and then
//! `catgan-cache` in the system temp folder. Each cache uses the first of them it can write
//! to, and keeps its files apart:
//!
//! - `data/`: decoded-image caches ([`crate::cache`]);
//! - `kernels/`: compiled GPU kernels and autotune results (the `cats` tool's
//!   `kernel_cache`);
//! - `fid_inception_v3.safetensors`: the converted FID weights (`dcgan-metrics`'
//!   `weights`), in the folder itself, where earlier versions put it.
//!
//! Deleting any of them only costs the time to rebuild it.

use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable that moves catgan's cache folder (see [`cache_roots`]).
pub const CACHE_DIR_ENV_VAR: &str = "CATGAN_CACHE_DIR";

/// Name of catgan's folder in the system temp folder: the last of [`cache_roots`].
pub const TEMP_CACHE_NAME: &str = "catgan-cache";

/// catgan's cache folders, best first: the user's (`$CATGAN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/catgan`, else `$HOME/.cache/catgan`; an empty variable counts as unset),
/// when one of those variables is set, then `<temp>/catgan-cache`. A cache uses its
/// subfolder (see the [module docs](self)) of the first one it can write to.
pub fn cache_roots() -> Vec<PathBuf> {
    cache_roots_with_env(|name| std::env::var_os(name))
}

/// [`cache_roots`] with the environment given as a lookup function (for tests).
fn cache_roots_with_env(env: impl Fn(&str) -> Option<OsString>) -> Vec<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let user = var(CACHE_DIR_ENV_VAR)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("catgan")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("catgan")));
    user.into_iter()
        .chain([std::env::temp_dir().join(TEMP_CACHE_NAME)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_folder_comes_first_then_the_temp_folder() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let tmp = std::env::temp_dir().join("catgan-cache");
        let all = env(&[
            ("CATGAN_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            cache_roots_with_env(all),
            [PathBuf::from("/c"), tmp.clone()]
        );
        let empty_catgan = env(&[
            ("CATGAN_CACHE_DIR", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            cache_roots_with_env(empty_catgan),
            [PathBuf::from("/x/catgan"), tmp.clone()]
        );
        assert_eq!(
            cache_roots_with_env(env(&[("HOME", "/h")])),
            [PathBuf::from("/h/.cache/catgan"), tmp.clone()]
        );
        assert_eq!(cache_roots_with_env(env(&[])), [tmp]);
    }
}
