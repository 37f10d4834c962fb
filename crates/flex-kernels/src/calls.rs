//! How often the fast path ran: counters that prove a dispatch reached it.

use std::cell::Cell;

/// How many times each operation took the fast path on the current thread since it
/// started (see [`calls`]). An operation that fell back to burn's own (another backend,
/// another dtype, an unsupported shape) is not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// [`crate::conv2d`] calls.
    pub conv2d: u64,
    /// [`crate::conv_transpose2d`] calls.
    pub conv_transpose2d: u64,
    /// [`crate::batch_norm_leaky_relu`] calls.
    pub batch_norm_leaky_relu: u64,
    /// [`crate::leaky_relu`] calls.
    pub leaky_relu: u64,
    /// [`crate::tanh_channels_first`] calls.
    pub tanh_channels_first: u64,
    /// [`crate::to_channels_first`] calls.
    pub to_channels_first: u64,
    /// One-pass Adam updates ([`crate::adam::FusedAdam`]), one per parameter tensor.
    pub adam: u64,
    /// [`crate::max_pool2d`] and [`crate::avg_pool2d`] calls.
    pub pool2d: u64,
    /// [`crate::cat_channels`] calls.
    pub cat_channels: u64,
}

impl Calls {
    /// The calls made between `earlier` (an older [`calls`] of the same thread) and these
    /// (zero where `earlier` is not older).
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls {
            conv2d: self.conv2d.saturating_sub(earlier.conv2d),
            conv_transpose2d: self
                .conv_transpose2d
                .saturating_sub(earlier.conv_transpose2d),
            batch_norm_leaky_relu: self
                .batch_norm_leaky_relu
                .saturating_sub(earlier.batch_norm_leaky_relu),
            leaky_relu: self.leaky_relu.saturating_sub(earlier.leaky_relu),
            tanh_channels_first: self
                .tanh_channels_first
                .saturating_sub(earlier.tanh_channels_first),
            to_channels_first: self
                .to_channels_first
                .saturating_sub(earlier.to_channels_first),
            adam: self.adam.saturating_sub(earlier.adam),
            pool2d: self.pool2d.saturating_sub(earlier.pool2d),
            cat_channels: self.cat_channels.saturating_sub(earlier.cat_channels),
        }
    }

    /// All calls together.
    pub fn total(&self) -> u64 {
        self.conv2d
            + self.conv_transpose2d
            + self.batch_norm_leaky_relu
            + self.leaky_relu
            + self.tanh_channels_first
            + self.to_channels_first
            + self.adam
            + self.pool2d
            + self.cat_channels
    }
}

thread_local! {
    static CALLS: Cell<Calls> = const {
        Cell::new(Calls {
            conv2d: 0,
            conv_transpose2d: 0,
            batch_norm_leaky_relu: 0,
            leaky_relu: 0,
            tanh_channels_first: 0,
            to_channels_first: 0,
            adam: 0,
            pool2d: 0,
            cat_channels: 0,
        })
    };
}

/// The fast-path calls made on the current thread so far.
///
/// Per thread (the thread that called the operation, whichever threads then did its work),
/// so that tests running side by side each see only their own calls: take one before and
/// one after, and compare with [`Calls::since`]. Counting costs a thread-local increment.
pub fn calls() -> Calls {
    CALLS.with(Cell::get)
}

/// Adds one call of the operation `field` picks.
pub(crate) fn count(field: impl FnOnce(&mut Calls) -> &mut u64) {
    CALLS.with(|calls| {
        let mut c = calls.get();
        *field(&mut c) += 1;
        calls.set(c);
    });
}
