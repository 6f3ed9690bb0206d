//! A global allocator that counts live bytes and remembers the peak.
//!
//! The workspace forbids `unsafe`; this module is the one exception in the crate
//! (`unsafe_code = "deny"` in its Cargo.toml plus the `allow` below). Implementing
//! [`GlobalAlloc`] is an `unsafe impl` by definition, and measuring peak memory from
//! inside the process, portably and precisely, needs one. The implementation only
//! forwards every call unchanged to [`System`] and updates two atomics, so it adds no
//! memory-safety obligation of its own.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A [`System`] allocator wrapper that tracks current and peak allocated bytes.
///
/// Register it in a binary:
///
/// ```
/// use chorus_trace::CountingAlloc;
///
/// #[global_allocator]
/// static ALLOC: CountingAlloc = CountingAlloc::new();
///
/// fn main() {
///     ALLOC.reset_peak();
///     let v = vec![1u8; 1 << 20];
///     assert!(ALLOC.peak_above_baseline() >= 1 << 20);
///     drop(v);
/// }
/// ```
#[derive(Debug)]
pub struct CountingAlloc {
    current: AtomicUsize,
    peak: AtomicUsize,
    baseline: AtomicUsize,
}

impl CountingAlloc {
    /// A counter with nothing allocated.
    pub const fn new() -> Self {
        Self {
            current: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            baseline: AtomicUsize::new(0),
        }
    }

    /// Bytes allocated right now (through this allocator).
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// The most bytes allocated at once since the last [`reset_peak`](Self::reset_peak).
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// What [`current`](Self::current) was at the last [`reset_peak`](Self::reset_peak).
    pub fn baseline(&self) -> usize {
        self.baseline.load(Ordering::Relaxed)
    }

    /// Starts a new measurement: the peak and the baseline become the current value.
    pub fn reset_peak(&self) {
        let now = self.current.load(Ordering::Relaxed);
        self.baseline.store(now, Ordering::Relaxed);
        self.peak.store(now, Ordering::Relaxed);
    }

    /// The peak above the baseline: the most extra memory allocated at once since the
    /// last [`reset_peak`](Self::reset_peak).
    pub fn peak_above_baseline(&self) -> usize {
        self.peak().saturating_sub(self.baseline())
    }

    fn added(&self, bytes: usize) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn removed(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the bookkeeping touches only atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            self.added(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            self.added(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        self.removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`; the caller
        // upholds the rest of `realloc`'s contract.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            self.removed(layout.size());
            self.added(new_size);
        }
        new
    }
}
