//! Where and when figures were taken (CPU model, threads, load, git commit, date), and
//! waiting for a quiet machine before timing on a shared one. The CPU figures come from
//! `sysinfo`; `None` or "unknown" where it cannot read them.

use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sysinfo::{CpuRefreshKind, RefreshKind, System};

/// The threads the CPU backends use: `RAYON_NUM_THREADS` if set, else every core (rayon's
/// default, which flex and ndarray use).
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

/// The CPU's fp32 peak for `threads` threads, in GFLOP/s, and how it was estimated:
/// threads × clock × FLOP per cycle and core, the last from the vector extensions (two
/// FMA units: 64 with AVX-512, 32 with AVX2 + FMA, else 8). Linux only (`/proc/cpuinfo`'s
/// `cpu MHz` and `flags`: the clock a virtual machine reports, not a measured turbo).
pub fn fp32_peak_gflops(threads: usize) -> Option<(f64, String)> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    peak_from_cpuinfo(&cpuinfo, threads)
}

/// The CPU's fp32 peak for `threads` threads, in GFLOP/s, measured: each thread runs a
/// loop of independent vector FMAs (AVX-512 or AVX2, whichever the CPU has) for about
/// `seconds`, all at once, so the clock is the one the cores really run at under a full
/// vector load (turbo included), which `/proc/cpuinfo` does not tell in a virtual machine
/// (the 2-core Intel Xeon of run 11 reports 2.6 GHz and sustains ≈ 3.5 GHz). `None`
/// without AVX2 + FMA, or off x86-64.
pub fn measured_fp32_peak_gflops(threads: usize, seconds: f64) -> Option<(f64, String)> {
    let fma = FmaLoop::widest()?;
    let threads = threads.max(1);
    let deadline = Duration::from_secs_f64(seconds.max(0.01));
    let rates: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let start = Instant::now();
                    let mut calls = 0u64;
                    let mut sink = 0.0f32;
                    while start.elapsed() < deadline {
                        // SAFETY: `FmaLoop::widest` picked a loop this CPU has the features of.
                        sink += unsafe { (fma.run)(FMA_LOOP_ITERATIONS) };
                        calls += 1;
                    }
                    std::hint::black_box(sink);
                    calls as f64 * fma.flop_per_call / start.elapsed().as_secs_f64() / 1e9
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let total: f64 = rates.iter().sum();
    (total > 0.0).then(|| {
        let each = total / threads as f64;
        (
            total,
            format!(
                "measured: {threads} × {each:.0} GFLOP/s, an {} FMA loop on every thread",
                fma.isa
            ),
        )
    })
}

/// Iterations of one FMA loop call (about 0.1 ms).
const FMA_LOOP_ITERATIONS: u64 = 1 << 12;

/// Independent accumulators of the FMA loop: more than FMA units × latency (2 × 4).
const FMA_ACCUMULATORS: usize = 12;

/// A loop of [`FMA_ACCUMULATORS`] independent vector FMAs per iteration, in the widest
/// vectors the CPU has.
#[derive(Clone, Copy)]
struct FmaLoop {
    /// The instruction set, for the report.
    isa: &'static str,
    /// FLOP of one call of `run` with [`FMA_LOOP_ITERATIONS`] iterations.
    flop_per_call: f64,
    /// The loop; returns a sum so the work is not optimized away. Unsafe: needs `isa`.
    run: unsafe fn(u64) -> f32,
}

impl FmaLoop {
    /// The widest loop this CPU runs: AVX-512, else AVX2 + FMA; `None` without either.
    fn widest() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        {
            let flop =
                |lanes: usize| (FMA_LOOP_ITERATIONS as usize * FMA_ACCUMULATORS * lanes * 2) as f64;
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Some(Self {
                    isa: "AVX-512",
                    flop_per_call: flop(16),
                    run: x86::fma_loop_avx512,
                });
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Some(Self {
                    isa: "AVX2",
                    flop_per_call: flop(8),
                    run: x86::fma_loop_avx2,
                });
            }
        }
        None
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::FMA_ACCUMULATORS;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop_avx512(iterations: u64) -> f32 {
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); FMA_ACCUMULATORS];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
        _mm512_reduce_add_ps(sum)
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_loop_avx2(iterations: u64) -> f32 {
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); FMA_ACCUMULATORS];
        for _ in 0..iterations {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let sum = acc
            .iter()
            .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        lanes.iter().sum()
    }
}

fn peak_from_cpuinfo(cpuinfo: &str, threads: usize) -> Option<(f64, String)> {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let mhz: f64 = field("cpu MHz")?.parse().ok().filter(|&m: &f64| m > 0.0)?;
    let flags = field("flags").unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let (per_cycle, isa) = if has("avx512f") {
        (64.0, "AVX-512")
    } else if has("avx2") && has("fma") {
        (32.0, "AVX2+FMA")
    } else {
        (8.0, "SSE")
    };
    let ghz = mhz / 1000.0;
    let peak = threads as f64 * ghz * per_cycle;
    Some((
        peak,
        format!("{threads} × {ghz:.2} GHz × {per_cycle} FLOP/cycle ({isa}, 2 FMA units)"),
    ))
}

/// Where and when figures were taken, for the JSON files and the docs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    /// CPU model (e.g. Linux's `/proc/cpuinfo` `model name`), or "unknown".
    pub cpu: String,
    /// Threads the CPU backends use ([`cpu_threads`]).
    pub threads: usize,
    /// The 1-minute load average before measuring (Unix), to judge noise.
    pub load_average: Option<f64>,
    /// `git rev-parse --short HEAD` (with `-dirty` if the tree has changes), if in a repository.
    pub commit: Option<String>,
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
}

/// Reads [`MachineInfo`] now.
pub fn machine_info() -> MachineInfo {
    let system =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
    let cpu = system
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_string())
        .filter(|brand| !brand.is_empty())
        .unwrap_or_else(|| "unknown".into());
    // Windows has no load average (sysinfo reports zeros there).
    let load_average =
        (sysinfo::IS_SUPPORTED_SYSTEM && cfg!(unix)).then(|| System::load_average().one);
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).map(|c| {
        match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(s) if !s.is_empty() => format!("{c}-dirty"),
            _ => c,
        }
    });
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    MachineInfo {
        cpu,
        threads: cpu_threads(),
        load_average,
        commit,
        date: civil_date(days),
    }
}

/// Fraction of all CPU time spent busy (not idle, not waiting for I/O) over `sample` (at
/// least sysinfo's minimum interval; None where sysinfo cannot read it). Called while this
/// process is idle, it says how much of the machine other programs are using.
pub fn cpu_busy_fraction(sample: Duration) -> Option<f64> {
    if !sysinfo::IS_SUPPORTED_SYSTEM {
        return None;
    }
    let mut system = System::new_with_specifics(
        RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_cpu_usage()),
    );
    std::thread::sleep(sample.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL));
    system.refresh_cpu_usage();
    Some(f64::from(system.global_cpu_usage()) / 100.0)
}

/// Waits until other programs use under `threshold` of the CPUs (sampled over 3 s), for at
/// most `max_wait`; returns the last busy fraction seen (None where it cannot be read).
/// For timing on a shared machine: a busy neighbour halves our figures and makes PyTorch's
/// spin-waiting OpenMP threads collapse.
pub fn wait_until_quiet(
    threshold: f64,
    max_wait: Duration,
    progress: &mut dyn FnMut(&str),
) -> Option<f64> {
    let start = Instant::now();
    let mut announced = false;
    loop {
        let busy = cpu_busy_fraction(Duration::from_secs(3))?;
        if busy < threshold {
            return Some(busy);
        }
        if start.elapsed() >= max_wait {
            progress(&format!(
                "still {:.0}% busy after waiting {:.0} s: measuring anyway",
                busy * 100.0,
                start.elapsed().as_secs_f64()
            ));
            return Some(busy);
        }
        if !announced {
            progress(&format!(
                "machine {:.0}% busy (other programs): waiting for under {:.0}% (at most {:.0} s)",
                busy * 100.0,
                threshold * 100.0,
                max_wait.as_secs_f64()
            ));
            announced = true;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// For the bench binaries' `--wait-quiet S`: waits (at most `max_wait_s` seconds) until
/// other programs use under 10% of the CPUs, reporting on stderr how busy the machine was.
/// Does nothing for 0.
pub fn settle_before_run(max_wait_s: u64) {
    if max_wait_s == 0 {
        return;
    }
    let busy = wait_until_quiet(0.10, Duration::from_secs(max_wait_s), &mut |line| {
        eprintln!("  {line}")
    });
    if let Some(b) = busy {
        eprintln!("  (machine {:.0}% busy before this run)", b * 100.0);
    }
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FMA loop's figure is a real rate: positive wherever the CPU has AVX2 + FMA, and
    /// within a sane factor of the clock `/proc/cpuinfo` reports (wide, since other tests
    /// share the cores; a FLOP count off by the lanes or the accumulators falls outside).
    #[test]
    fn the_measured_peak_is_near_the_nominal_one() {
        let Some((measured, how)) = measured_fp32_peak_gflops(1, 0.2) else {
            assert!(
                FmaLoop::widest().is_none(),
                "the CPU has an FMA loop but no figure"
            );
            return;
        };
        assert!(how.contains("1 ×"), "{how}");
        if let Some((nominal, _)) = fp32_peak_gflops(1) {
            let ratio = measured / nominal;
            assert!(
                (0.1..=3.0).contains(&ratio),
                "measured {measured:.1} vs nominal {nominal:.1} GFLOP/s"
            );
        } else {
            assert!(measured > 1.0, "{measured}");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_418), "2025-11-26");
        assert_eq!(civil_date(11_016), "2000-02-29");
    }

    #[test]
    fn the_fp32_peak_follows_the_clock_and_the_vector_width() {
        let cpu =
            |flags: &str| format!("processor\t: 0\ncpu MHz\t\t: 2300.000\nflags\t\t: {flags}\n");
        let (peak, how) = peak_from_cpuinfo(&cpu("fpu sse2 avx2 fma avx512f"), 2).unwrap();
        assert_eq!(peak, 2.0 * 2.3 * 64.0);
        assert!(how.contains("AVX-512"), "{how}");
        let (peak, _) = peak_from_cpuinfo(&cpu("fpu sse2 avx2 fma"), 4).unwrap();
        assert_eq!(peak, 4.0 * 2.3 * 32.0);
        let (peak, _) = peak_from_cpuinfo(&cpu("fpu sse2 avx2"), 1).unwrap();
        assert_eq!(peak, 2.3 * 8.0);
        assert_eq!(peak_from_cpuinfo("flags\t: avx512f\n", 2), None, "no clock");
    }

    #[test]
    fn machine_info_reads_something() {
        let info = machine_info();
        assert!(info.threads >= 1);
        assert_eq!(info.date.len(), "YYYY-MM-DD".len());
    }
}
