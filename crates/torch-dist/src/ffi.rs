//! The shim's C functions (`shim/dist.cpp`). Tensors are `at::Tensor*`, torch-sys's
//! `C_tensor`; an error is a malloc'd message the caller frees with `tdist_free_error`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int};

use torch_sys::C_tensor;

/// The shim's group (store and backend).
#[repr(C)]
pub struct Group {
    _private: [u8; 0],
}

unsafe extern "C" {
    pub fn tdist_free_error(e: *mut c_char);
    pub fn tdist_new_gloo(
        addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        ifname: *const c_char,
        out: *mut *mut Group,
    ) -> *mut c_char;
    #[cfg(feature = "nccl")]
    pub fn tdist_new_nccl(
        addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: i64,
        device: c_int,
        out: *mut *mut Group,
    ) -> *mut c_char;
    pub fn tdist_free(g: *mut Group);
    pub fn tdist_all_reduce(
        g: *mut Group,
        ts: *const *mut C_tensor,
        n: c_int,
        op: c_int,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn tdist_broadcast(
        g: *mut Group,
        ts: *const *mut C_tensor,
        n: c_int,
        root: c_int,
        timeout_ms: i64,
    ) -> *mut c_char;
    pub fn tdist_barrier(g: *mut Group, timeout_ms: i64) -> *mut c_char;
}

/// Takes the shim's error message (freeing it): `None` for success.
///
/// # Safety
/// `e` is null or a string returned by a `tdist_*` function and not yet freed.
pub unsafe fn take_error(e: *mut c_char) -> Option<String> {
    if e.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string the shim allocated, freed once here
    let s = unsafe { std::ffi::CStr::from_ptr(e) }
        .to_string_lossy()
        .into_owned();
    unsafe { tdist_free_error(e) };
    Some(s)
}
