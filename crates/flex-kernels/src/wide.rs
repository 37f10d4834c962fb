//! Loops compiled for the widest vectors the CPU has.
//!
//! A library is built for the baseline of its target (SSE2 on x86-64: 4 floats a vector),
//! so the elementwise passes around the GEMMs — batch norm, the activations, Adam, the
//! sums of weight-gradient parts — ran 4 floats at a time on CPUs with 16-float AVX-512
//! units (catgan's docs/performance.md, change 24). [`wide!`] runs a block inside a
//! function compiled for AVX-512 (or AVX2) where the CPU has it, after checking at run
//! time, and LLVM vectorises its loops at that width. Loops over a few channels need
//! their count fixed at compile time as well: LLVM's AVX-512 loops take 64 floats a
//! round, and a row of 16 or 32 channels would run in the scalar remainder.
//!
//! The results do not change: the same float operations run in the same order, only more
//! of them at once (Rust never fuses `a·b + c` into one rounding by itself, and a loop's
//! sums across iterations stay in order), so every pass gives the same bits as before on
//! any CPU.

/// Runs the block `$body` compiled for AVX-512 or AVX2 where the CPU has them (checked at
/// run time, a cached flag), else as built: `wide!({ loops })` as an expression, with the
/// block's value. The block becomes an `#[inline(always)]` closure, so that its loops are
/// compiled inside the wide functions; a closure or function it calls keeps its own width
/// unless LLVM inlines it too (mark such closures `#[inline(always)]`).
macro_rules! wide {
    ($body:block) => {
        $crate::wide::run(
            #[inline(always)]
            || $body,
        )
    };
}
pub(crate) use wide;

/// Runs `f` compiled for AVX-512 or AVX2 where the CPU has them, else as built; what
/// [`wide!`] calls. `f` runs wide only where it is inlined into the wide functions.
#[inline(always)]
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512 (checked just above).
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(test)]
mod tests {
    #[test]
    fn gives_the_same_bits_as_the_plain_loop() {
        // A loop of the kind the passes run: products, sums across iterations, a select.
        let x: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let pass = |x: &[f32]| {
            let mut sum = 0.0f32;
            let y: Vec<f32> = x
                .iter()
                .map(|&v| {
                    let z = v * 1.3 + 0.2;
                    sum += z * z;
                    z * if z < 0.0 { 0.2 } else { 1.0 }
                })
                .collect();
            (y, sum)
        };
        let plain = pass(&x);
        let widened = wide!({ pass(&x) });
        assert_eq!(widened.0, plain.0);
        assert_eq!(widened.1.to_bits(), plain.1.to_bits());
        assert_eq!(wide!({ 42 }), 42, "returns the block's value");
    }
}
