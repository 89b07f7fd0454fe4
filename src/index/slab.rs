//! [`Slab`]: a read-only array that lives either in the heap (while a segment is being built and
//! repaired) or inside a memory-mapped segment file (once it is served).
//!
//! Search indexes these arrays in its innermost loop, so a slab is a raw pointer and a length
//! (one load, no enum branch per access) plus whatever keeps the memory alive: the `Vec` it was
//! built from, or the shared mapping of the file.

use memmap2::Mmap;
use std::sync::Arc;

// The `Vec` is never read: it owns the memory `ptr` points into.
#[allow(dead_code)]
enum Owner<T> {
    Heap(Vec<T>),
    Mapped(Arc<Mmap>),
}

pub(crate) struct Slab<T: Copy + 'static> {
    ptr: *const T,
    len: usize,
    owner: Owner<T>,
}

// SAFETY: a slab is immutable once shared (mutation needs `&mut self` and a heap owner); the memory
// it points at is owned by the slab itself (Vec) or by an `Arc<Mmap>` that it keeps alive.
unsafe impl<T: Copy + Send + Sync + 'static> Send for Slab<T> {}
// SAFETY: as for Send above.
unsafe impl<T: Copy + Send + Sync + 'static> Sync for Slab<T> {}

impl<T: Copy + 'static> Default for Slab<T> {
    fn default() -> Self {
        Slab::from(Vec::new())
    }
}

impl<T: Copy + 'static> From<Vec<T>> for Slab<T> {
    fn from(v: Vec<T>) -> Self {
        Slab {
            ptr: v.as_ptr(),
            len: v.len(),
            owner: Owner::Heap(v),
        }
    }
}

impl<T: Copy + 'static> Slab<T> {
    /// `len` values of `T` at byte `offset` of `map`. The caller has checked that the range lies
    /// inside the mapping and that `offset` is aligned for `T` (sections are page-aligned).
    pub(crate) fn mapped(map: &Arc<Mmap>, offset: usize, len: usize) -> Option<Slab<T>> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        if offset.checked_add(bytes)? > map.len()
            || !(map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>())
        {
            return None;
        }
        Some(Slab {
            // SAFETY: in bounds (checked above).
            ptr: unsafe { map.as_ptr().add(offset) } as *const T,
            len,
            owner: Owner::Mapped(Arc::clone(map)),
        })
    }

    #[inline(always)]
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: ptr/len describe memory owned by `self.owner` for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Mutable access while the slab is still on the heap (graph repair before writing).
    pub(crate) fn heap_mut(&mut self) -> Option<&mut [T]> {
        match &mut self.owner {
            Owner::Heap(v) => Some(v.as_mut_slice()),
            Owner::Mapped(_) => None,
        }
    }

    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self.owner, Owner::Mapped(_))
    }

    /// Bytes of the array (resident or not).
    pub(crate) fn byte_len(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// Raw bytes of the array (for writing and checksums).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        // SAFETY: any initialised `Copy` value array may be viewed as bytes (the types used here,
        // f32, u32, u8, u64, have no padding).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.byte_len()) }
    }
}

impl<T: Copy + 'static> std::ops::Deref for Slab<T> {
    type Target = [T];
    #[inline(always)]
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy + PartialEq + 'static> PartialEq for Slab<T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + std::fmt::Debug + 'static> std::fmt::Debug for Slab<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slab({} x {})", self.len, std::any::type_name::<T>())
    }
}

/// Views a slice of plain values as bytes (for writing sections).
pub(crate) fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: as in `Slab::as_bytes`: plain values without padding.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}
