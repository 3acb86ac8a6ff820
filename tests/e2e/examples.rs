//! Every file in config/examples/ must load, build and validate.

use std::process::Command;

#[test]
fn every_example_config_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        // Port 0 so the bind check passes whatever else runs on this machine.
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .args([
                "--set",
                "receivers.otlp.protocols.http.endpoint=127.0.0.1:0",
            ])
            .args([
                "--set",
                "receivers.otlp.protocols.grpc.endpoint=127.0.0.1:0",
            ])
            .args(["--set", "service.telemetry.metrics.address=127.0.0.1:0"])
            .args(["--set", "extensions.health_check.endpoint=127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate:\n{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the example configs, found {checked}"
    );
}

#[test]
fn the_embedded_default_validates() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .env("SLUICE_OTLP_GRPC_ENDPOINT", "127.0.0.1:0")
        .env("SLUICE_OTLP_HTTP_ENDPOINT", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
