//! Link settings for the `sluice` binary.
//!
//! Release builds for x86_64 Linux, linked by LLD (rustc's default linker for that target
//! since 1.90), lay the machine code out in the order of `link/symbol-order.txt`: the
//! functions that run when idle first, then those of the OTLP hot path, then those that only
//! start-up runs (whose pages `src/start_up_pages.rs` releases). A
//! Rust binary's code is otherwise spread by crate, and as the kernel maps 64 KiB around
//! every page that faults, start-up alone left 6 MiB of the 15 MiB of code resident
//! (BENCHMARKS.md, "Code layout"). `scripts/symbol-order.sh` regenerates the file; symbols it
//! names that a build does not have (another rustc or other dependency versions) are ignored,
//! so a stale file costs memory, never correctness. They are also linked position-dependent
//! unless `SLUICE_PIE=1` (see `main`).
//!
//! `SLUICE_LINK_MAP=PATH` also writes the linker's map file there (the order script reads it).

use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "link/symbol-order.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=SLUICE_LINK_MAP");
    println!("cargo:rerun-if-env-changed=SLUICE_NO_SYMBOL_ORDER");

    if !links_with_lld() {
        return;
    }
    if let Ok(map) = env::var("SLUICE_LINK_MAP")
        && !map.is_empty()
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-Map={map}");
    }
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    println!("cargo:rerun-if-env-changed=SLUICE_PIE");
    let pie = env::var_os("SLUICE_PIE").is_some_and(|v| v != "0");
    if release && !pie {
        // A position-dependent executable, as Go builds the OTel Collector: the loader then
        // relocates nothing in the binary, where a position-independent one has 26,000
        // pointers in .data.rel.ro (1 MiB with OpenSSL) rewritten at every start, which
        // made every page of it private memory (BENCHMARKS.md, "Idle memory"). Libraries,
        // heap, stacks and mappings keep their random addresses. `SLUICE_PIE=1` builds a
        // position-independent binary where a policy asks for one.
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let disabled = env::var_os("SLUICE_NO_SYMBOL_ORDER").is_some_and(|v| v != "0");
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&manifest_dir).join(ORDER_FILE);
    if release && !disabled && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the binary is linked by LLD: x86_64 Linux with glibc, rustc 1.90 or later, and
/// no linker or linker flavour chosen by the user (GNU ld knows neither option used here).
fn links_with_lld() -> bool {
    if env::var("TARGET").ok().as_deref() != Some("x86_64-unknown-linux-gnu") {
        return false;
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    if env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some() {
        return false;
    }
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if rustflags.contains("linker") || rustflags.contains("link-self-contained") {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (...)": LLD became the default linker for this target in 1.90.
    let version = String::from_utf8_lossy(&out.stdout);
    let minor = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}
