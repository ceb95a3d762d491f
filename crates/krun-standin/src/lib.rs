//! A stand-in `libkrun.so` for the real smolvm 0.8.0 client.
//!
//! The client (`src/agent/krun.rs` 55-139 at v0.8.0) `dlopen`s libkrun from
//! `$SMOLVM_LIB_DIR`, makes its configuration calls in `smolvm _boot-vm`, then
//! calls `krun_start_enter`. Here the configuration is recorded ([`config`],
//! [`ffi`]), and `krun_start_enter` execs our boot helper
//! (`krun-standin-boot`, found next to this library), which runs smolvm's own
//! 0.8.0 agent as pid 1 of new Linux namespaces ([`boot`], [`guest`]) after
//! the safety checks of [`safety`] pass. No VM is involved.

pub mod boot;
pub mod config;
pub mod ffi;
pub mod guest;
pub mod janitor;
pub mod loopdev;
pub mod safety;
pub mod sys;
