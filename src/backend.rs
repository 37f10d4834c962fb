//! Picking a compiled burn backend and device at run time.
//!
//! Backends are cargo features (`flex` (default), `ndarray`, `wgpu`, `vulkan`, `metal`,
//! `cuda`); the code that trains is generic over `B: AutodiffBackend`. [`dispatch`] turns a
//! run-time [`BackendKind`] and [`DeviceSpec`] into a call of [`BackendTask::run`] with the
//! concrete backend type.

use std::fmt;
use std::str::FromStr;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// The burn backends this crate knows (each available only if its feature is compiled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// burn-flex: the fast pure-Rust CPU backend (feature `flex`, on by default).
    Flex,
    /// burn-ndarray: a portable CPU backend (feature `ndarray`); slow for convolutions.
    NdArray,
    /// burn-wgpu with the default graphics API of the platform (feature `wgpu`).
    Wgpu,
    /// burn-wgpu through Vulkan with SPIR-V kernels (feature `vulkan`).
    Vulkan,
    /// burn-wgpu through Metal (feature `metal`, macOS).
    Metal,
    /// burn-cuda: NVIDIA GPUs through CUDA (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// Every known backend, compiled or not.
    pub const ALL: [BackendKind; 6] = [
        BackendKind::Flex,
        BackendKind::NdArray,
        BackendKind::Wgpu,
        BackendKind::Vulkan,
        BackendKind::Metal,
        BackendKind::Cuda,
    ];

    /// The name used on the command line and in reports (also the cargo feature's name).
    pub fn name(&self) -> &'static str {
        match self {
            BackendKind::Flex => "flex",
            BackendKind::NdArray => "ndarray",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Vulkan => "vulkan",
            BackendKind::Metal => "metal",
            BackendKind::Cuda => "cuda",
        }
    }

    /// Whether this binary was compiled with the backend's feature.
    pub fn is_compiled(&self) -> bool {
        match self {
            BackendKind::Flex => cfg!(feature = "flex"),
            BackendKind::NdArray => cfg!(feature = "ndarray"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Vulkan => cfg!(feature = "vulkan"),
            BackendKind::Metal => cfg!(feature = "metal"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Whether it computes on a GPU (through a driver that may be missing).
    pub fn is_gpu(&self) -> bool {
        !matches!(self, BackendKind::Flex | BackendKind::NdArray)
    }

    /// The compiled backends.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The backend used when none is asked for: the most specific GPU backend compiled in
    /// (cuda, then metal, vulkan, wgpu), else flex, else ndarray.
    pub fn preferred() -> Option<BackendKind> {
        [
            BackendKind::Cuda,
            BackendKind::Metal,
            BackendKind::Vulkan,
            BackendKind::Wgpu,
            BackendKind::Flex,
            BackendKind::NdArray,
        ]
        .into_iter()
        .find(|b| b.is_compiled())
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is unknown or not compiled into this binary.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The name is not a backend at all.
    #[error("unknown backend `{name}`: expected one of {}", BackendKind::ALL.map(|b| b.name()).join(", "))]
    Unknown {
        /// What was asked for.
        name: String,
    },
    /// A known backend whose cargo feature is off in this build.
    #[error(
        "backend `{backend}` is not compiled into this binary (compiled: {}); rebuild with \
         `--features {backend}`{hint}",
        compiled_list()
    )]
    NotCompiled {
        /// The backend asked for.
        backend: BackendKind,
        /// An extra hint (CUDA's build variable).
        hint: &'static str,
    },
    /// A device string the backend does not understand.
    #[error("device `{device}` is not valid for backend `{backend}`: {reason}")]
    BadDevice {
        /// The backend.
        backend: BackendKind,
        /// The device string.
        device: String,
        /// What would be valid.
        reason: String,
    },
}

fn compiled_list() -> String {
    let names: Vec<&str> = BackendKind::compiled().iter().map(|b| b.name()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, BackendError> {
        BackendKind::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| BackendError::Unknown { name: s.into() })
    }
}

impl BackendKind {
    /// Parses a name and checks the backend is compiled in.
    pub fn parse_compiled(name: &str) -> Result<BackendKind, BackendError> {
        let kind: BackendKind = name.parse()?;
        if kind.is_compiled() {
            Ok(kind)
        } else {
            Err(BackendError::NotCompiled {
                backend: kind,
                hint: if kind == BackendKind::Cuda {
                    " (without nvcc, also set CUDARC_CUDA_VERSION, e.g. 13000)"
                } else {
                    ""
                },
            })
        }
    }
}

/// Which device of a backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeviceSpec {
    /// The backend's default device (the best GPU for GPU backends).
    #[default]
    Default,
    /// The n-th GPU (CUDA ordinal, or wgpu's n-th discrete GPU).
    Gpu(usize),
    /// wgpu's n-th integrated GPU.
    IntegratedGpu(usize),
    /// wgpu's CPU adapter (e.g. lavapipe).
    Cpu,
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let index = |t: &str| {
            t.parse::<usize>()
                .map_err(|_| format!("`{s}`: expected default, cpu, N, gpu:N or integrated:N"))
        };
        match lower.as_str() {
            "default" | "auto" | "" => Ok(DeviceSpec::Default),
            "cpu" => Ok(DeviceSpec::Cpu),
            other => {
                if let Some(n) = other.strip_prefix("integrated:") {
                    index(n).map(DeviceSpec::IntegratedGpu)
                } else if let Some(n) = other.strip_prefix("gpu:").or(other.strip_prefix("cuda:")) {
                    index(n).map(DeviceSpec::Gpu)
                } else {
                    index(other).map(DeviceSpec::Gpu)
                }
            }
        }
    }
}

/// Work to run on whichever backend [`dispatch`] picks.
pub trait BackendTask {
    /// What the work returns.
    type Output;
    /// Runs the work with the concrete autodiff backend `B` on `device`.
    fn run<B: AutodiffBackend>(self, backend: BackendKind, device: B::Device) -> Self::Output;
}

/// Runs `task` on `backend`'s `device`.
pub fn dispatch<T: BackendTask>(
    backend: BackendKind,
    device: DeviceSpec,
    task: T,
) -> Result<T::Output, BackendError> {
    let bad = |reason: &str| BackendError::BadDevice {
        backend,
        device: format!("{device:?}"),
        reason: reason.into(),
    };
    if !backend.is_compiled() {
        return Err(BackendKind::parse_compiled(backend.name()).unwrap_err());
    }
    match (backend, device) {
        (BackendKind::Flex | BackendKind::NdArray, DeviceSpec::Default | DeviceSpec::Cpu) => {}
        (BackendKind::Flex | BackendKind::NdArray, _) => {
            return Err(bad("CPU backends have one device: use `cpu` or `default`"));
        }
        (BackendKind::Cuda, DeviceSpec::Cpu | DeviceSpec::IntegratedGpu(_)) => {
            return Err(bad("CUDA devices are GPU ordinals: use `default` or N"));
        }
        _ => {}
    }
    #[allow(unreachable_code, unused_variables)]
    let output = match backend {
        BackendKind::Flex => {
            #[cfg(feature = "flex")]
            {
                type B = burn::backend::Autodiff<burn::backend::Flex>;
                task.run::<B>(backend, Default::default())
            }
            #[cfg(not(feature = "flex"))]
            unreachable!()
        }
        BackendKind::NdArray => {
            #[cfg(feature = "ndarray")]
            {
                type B = burn::backend::Autodiff<burn::backend::NdArray>;
                task.run::<B>(backend, Default::default())
            }
            #[cfg(not(feature = "ndarray"))]
            unreachable!()
        }
        BackendKind::Wgpu | BackendKind::Vulkan | BackendKind::Metal => {
            #[cfg(feature = "wgpu")]
            {
                use burn::backend::wgpu::WgpuDevice;
                crate::kernel_cache::configure();
                let wgpu_device = match device {
                    DeviceSpec::Default => WgpuDevice::DefaultDevice,
                    DeviceSpec::Gpu(n) => WgpuDevice::DiscreteGpu(n),
                    DeviceSpec::IntegratedGpu(n) => WgpuDevice::IntegratedGpu(n),
                    DeviceSpec::Cpu => WgpuDevice::Cpu,
                };
                match backend {
                    #[cfg(feature = "vulkan")]
                    BackendKind::Vulkan => {
                        type B = burn::backend::Autodiff<burn::backend::Vulkan>;
                        task.run::<B>(backend, wgpu_device)
                    }
                    #[cfg(feature = "metal")]
                    BackendKind::Metal => {
                        type B = burn::backend::Autodiff<burn::backend::Metal>;
                        task.run::<B>(backend, wgpu_device)
                    }
                    _ => {
                        type B = burn::backend::Autodiff<burn::backend::Wgpu>;
                        task.run::<B>(backend, wgpu_device)
                    }
                }
            }
            #[cfg(not(feature = "wgpu"))]
            unreachable!()
        }
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let index = match device {
                    DeviceSpec::Gpu(n) => n,
                    _ => 0,
                };
                crate::kernel_cache::configure();
                type B = burn::backend::Autodiff<burn::backend::Cuda>;
                task.run::<B>(backend, burn::backend::cuda::CudaDevice::new(index))
            }
            #[cfg(not(feature = "cuda"))]
            unreachable!()
        }
    };
    Ok(output)
}

/// A panic inside a backend (driver missing, out of memory, kernel failure), caught and
/// turned into a message with the likely fix.
#[derive(Debug, thiserror::Error)]
#[error("the {backend} backend failed: {message}\nhint: {hint}")]
pub struct DeviceFailure {
    /// The backend that failed.
    pub backend: BackendKind,
    /// The panic message.
    pub message: String,
    /// What to try.
    pub hint: String,
}

/// The message of a panic payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// Makes the calling thread one of rayon's workers, for a CPU backend
/// (`flex_kernels::threads::join_global_pool`; nothing on a GPU backend, where the main
/// thread mostly waits for the device, or without the `flex` feature): the parallel loops
/// the CPU backends start from this thread then run partly on it instead of each waking
/// the pool and waiting for it (−5% of a 64 px training step on 2 cores). Process-wide,
/// so only binaries call it, first thing in `main`, and only for work that runs on the
/// calling thread (not for a server that waits for other threads). Returns whether it
/// took effect.
pub fn join_global_pool(backend: BackendKind) -> bool {
    #[cfg(feature = "flex")]
    return !backend.is_gpu() && dcgan_core::flex_kernels::threads::join_global_pool();
    #[cfg(not(feature = "flex"))]
    {
        let _ = backend;
        false
    }
}

/// Panics of other threads seen while a [`catch_device_failure`] runs: a GPU backend's
/// device thread dies with the actual cause, and the calling thread only sees a failed call.
///
/// The panic hook is process-wide and several calls may run at once (a server's requests,
/// parallel tests), so one hook is installed for good the first time and each call
/// registers here instead of swapping the hook in and out: swapping raced, and a call
/// could restore the hook another call had just replaced, losing its messages.
struct PanicWatch {
    /// Tells this watch apart from other calls' on the same thread (nested calls).
    id: u64,
}

/// One watch: the thread that called [`catch_device_failure`] and what other threads said.
struct WatchEntry {
    id: u64,
    caller: std::thread::ThreadId,
    elsewhere: Vec<String>,
}

/// The running watches; the hook reads it and passes panics on to the hook it replaced
/// while none runs.
static WATCHES: std::sync::Mutex<Vec<WatchEntry>> = std::sync::Mutex::new(Vec::new());

impl PanicWatch {
    /// Registers the calling thread, installing the process-wide hook on first use.
    fn start() -> Self {
        static HOOK: std::sync::Once = std::sync::Once::new();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // A poisoned lock still holds the list; a panic must never panic again.
                let mut watches = WATCHES.lock().unwrap_or_else(|e| e.into_inner());
                if watches.is_empty() {
                    drop(watches);
                    return previous(info);
                }
                let thread = std::thread::current();
                // The caller's own panic becomes the error; the default message is noise.
                if watches.iter().any(|w| w.caller == thread.id()) {
                    return;
                }
                let place = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let line = format!(
                    "thread '{}' panicked{place}: {}",
                    thread.name().unwrap_or("unnamed"),
                    panic_text(info.payload())
                );
                // Which call a device thread serves is unknown: each running one hears it.
                for watch in watches.iter_mut() {
                    watch.elsewhere.push(line.clone());
                }
            }));
        });
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        WATCHES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(WatchEntry {
                id,
                caller: std::thread::current().id(),
                elsewhere: Vec::new(),
            });
        Self { id }
    }

    /// Unregisters, returning the other threads' panic messages in the order they came.
    fn finish(self) -> Vec<String> {
        let mut watches = WATCHES.lock().unwrap_or_else(|e| e.into_inner());
        match watches.iter().position(|w| w.id == self.id) {
            Some(index) => watches.remove(index).elsewhere,
            None => Vec::new(),
        }
    }
}

/// Runs `f`, turning a backend panic into a [`DeviceFailure`] with a hint.
///
/// burn reports device errors (no adapter, out of memory) by panicking; a tool should
/// instead say what to try. The default panic message is suppressed while `f` runs.
pub fn catch_device_failure<T>(
    backend: BackendKind,
    f: impl FnOnce() -> T,
) -> Result<T, DeviceFailure> {
    let watch = PanicWatch::start();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let elsewhere = watch.finish();
    result.map_err(|payload| {
        let mut message = panic_text(payload.as_ref());
        for other in elsewhere {
            message.push_str("\n  ");
            message.push_str(&other);
        }
        let lower = message.to_ascii_lowercase();
        let hint = if lower.contains("memory") || lower.contains("oom") || lower.contains("alloc") {
            "out of memory: lower --batch-size (or the model width --base), or use a device with more memory"
                .to_string()
        } else if backend.is_gpu() {
            format!(
                "check the GPU driver ({}), or train on the CPU with --backend flex",
                match backend {
                    BackendKind::Cuda => "NVIDIA driver and CUDA runtime; LD_LIBRARY_PATH must reach libnvrtc",
                    BackendKind::Metal => "Metal on macOS",
                    _ => "a Vulkan/Metal/DX12 driver; on Linux without a GPU install mesa-vulkan-drivers",
                }
            )
        } else {
            "this looks like a bug in catgan or burn: please report it with the command line".to_string()
        };
        DeviceFailure {
            backend,
            message,
            hint,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_uncompiled_backends_say_how_to_get_them() {
        for b in BackendKind::ALL {
            assert_eq!(b.name().parse::<BackendKind>().unwrap(), b);
        }
        assert!(matches!(
            "tpu".parse::<BackendKind>(),
            Err(BackendError::Unknown { .. })
        ));
        if !cfg!(feature = "cuda") {
            let err = BackendKind::parse_compiled("cuda").unwrap_err().to_string();
            assert!(
                err.contains("--features cuda") && err.contains("CUDARC_CUDA_VERSION"),
                "{err}"
            );
        }
        assert!(BackendKind::preferred().is_some());
    }

    #[test]
    fn device_specs_parse() {
        assert_eq!(
            "default".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Default
        );
        assert_eq!("1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Gpu(1));
        assert_eq!("cuda:2".parse::<DeviceSpec>().unwrap(), DeviceSpec::Gpu(2));
        assert_eq!(
            "integrated:0".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::IntegratedGpu(0)
        );
        assert_eq!("CPU".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert!("gpu:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn panics_become_failures_with_hints() {
        let err = catch_device_failure(BackendKind::Flex, || -> () {
            panic!("out of memory allocating 4 GiB")
        })
        .unwrap_err();
        assert!(err.to_string().contains("--batch-size"), "{err}");
        assert_eq!(catch_device_failure(BackendKind::Flex, || 5).unwrap(), 5);
    }

    /// The panic hook is process-wide: calls running at once (a server's requests, this
    /// test binary's threads) must each still get their device thread's message, and
    /// each must unregister when it ends.
    #[test]
    fn calls_at_once_each_keep_their_device_threads_message() {
        let callers: Vec<_> = (0..8)
            .map(|n| {
                std::thread::spawn(move || {
                    for round in 0..20 {
                        let err = catch_device_failure(BackendKind::Wgpu, || -> () {
                            let worker = std::thread::spawn(move || {
                                panic!("device {n} failed in round {round}")
                            });
                            assert!(worker.join().is_err());
                            panic!("CallError")
                        })
                        .unwrap_err();
                        let text = err.to_string();
                        assert!(
                            text.contains(&format!("device {n} failed in round {round}")),
                            "{text}"
                        );
                    }
                })
            })
            .collect();
        let ids: Vec<_> = callers.iter().map(|c| c.thread().id()).collect();
        for caller in callers {
            caller.join().unwrap();
        }
        // Every call unregistered itself, also those whose closure panicked.
        let watches = WATCHES.lock().unwrap();
        assert!(watches.iter().all(|w| !ids.contains(&w.caller)));
    }

    /// A GPU backend's device thread dies with the cause; the caller only sees a failed
    /// call. The failure must carry the device thread's message.
    #[test]
    fn a_panic_of_another_thread_is_part_of_the_failure() {
        let err = catch_device_failure(BackendKind::Wgpu, || -> () {
            let worker = std::thread::Builder::new()
                .name("device-thread".into())
                .spawn(|| panic!("shader compilation failed"))
                .unwrap();
            assert!(worker.join().is_err());
            panic!("called `Result::unwrap()` on an `Err` value: CallError")
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("CallError"), "{text}");
        assert!(
            text.contains("thread 'device-thread' panicked")
                && text.contains("shader compilation failed"),
            "{text}"
        );
        assert!(
            text.contains("GPU driver") || text.contains("driver"),
            "{text}"
        );
    }
}
