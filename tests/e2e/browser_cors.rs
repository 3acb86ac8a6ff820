//! A web page in a real browser (Debian's headless Chromium) sends OTLP/JSON to the HTTP
//! receiver across origins: the preflight and the request pass for an allowed origin and the
//! spans arrive; a page from another origin is stopped by the browser and nothing arrives.
//! Also the other keys of the HTTP server's answers and bodies: `response_headers` and
//! `compression_algorithms` (snappy and LZ4 bodies).

use crate::common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Collector, json_lines};

fn config(allowed_origin: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
        cors:
          allowed_origins: ["{allowed_origin}"]
          allowed_headers: ["Content-Type", "X-Tenant"]
          exposed_headers: ["X-Served-By"]
          max_age: 600
        response_headers:
          X-Served-By: sluice
        compression_algorithms: ["", snappy, lz4]
exporters:
  file/out:
    path: "@DIR@/out.jsonl"
    format: json
    flush_interval: 0s
extensions:
  health_check:
    endpoint: "@HEALTH@"
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file/out]
"#
    )
}

/// Serves one HTML page on its own port (its own origin) until the test ends.
fn serve_page(html: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    port
}

/// A page whose script posts one span to sluice with a header that needs a preflight, and
/// writes what happened into the document.
fn page(sluice_http: u16, span_name: &str) -> String {
    format!(
        r#"<!doctype html><html><body><div id="result">pending</div><script>
const body = {{resourceSpans: [{{resource: {{attributes: [{{key: "service.name", value: {{stringValue: "web"}}}}]}},
  scopeSpans: [{{spans: [{{traceId: "0102030405060708090a0b0c0d0e0f10", spanId: "0102030405060708",
  name: "{span_name}", kind: 1, startTimeUnixNano: "1700000000000000000", endTimeUnixNano: "1700000001000000000"}}]}}]}}]}};
fetch("http://127.0.0.1:{sluice_http}/v1/traces", {{method: "POST", credentials: "include",
  headers: {{"Content-Type": "application/json", "X-Tenant": "t1"}}, body: JSON.stringify(body)}})
  .then(r => {{ document.getElementById("result").textContent = "status " + r.status + " served-by " + r.headers.get("X-Served-By"); }})
  .catch(e => {{ document.getElementById("result").textContent = "refused " + e; }});
</script></body></html>"#
    )
}

/// Loads `url` in headless Chromium and returns the document once its script has run.
fn browse(url: &str, profile: &Path) -> String {
    let chromium = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
        .unwrap_or_else(|| {
            panic!("Chromium is not installed: run scripts/test.sh, or `apt-get install chromium`")
        });
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn result_of(dom: &str) -> String {
    dom.split("<div id=\"result\">")
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .unwrap_or("no result in the page")
        .to_string()
}

#[test]
fn a_page_from_an_allowed_origin_sends_spans_and_another_origin_is_stopped() {
    // The page's origin must be known before sluice starts: a port taken for the page now.
    let allowed_page = TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_port = allowed_page.local_addr().unwrap().port();
    drop(allowed_page);
    let mut c = Collector::start(&config(&format!("http://127.0.0.1:{allowed_port}")), &[]);

    // The allowed page: served on the port the config names.
    let html = page(c.http, "from-allowed-page");
    let listener = TcpListener::bind(("127.0.0.1", allowed_port)).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    let profile = tempfile::tempdir().unwrap();
    let dom = browse(
        &format!("http://127.0.0.1:{allowed_port}/"),
        &profile.path().join("a"),
    );
    // The page's script reads the exposed answer header (without `exposed_headers` the browser
    // hides it: it is not CORS-safelisted).
    assert_eq!(result_of(&dom), "status 200 served-by sluice", "{dom}");

    let other_port = serve_page(page(c.http, "from-other-page"));
    let dom = browse(
        &format!("http://127.0.0.1:{other_port}/"),
        &profile.path().join("b"),
    );
    assert!(result_of(&dom).starts_with("refused"), "{dom}");

    let lines = json_lines(&c.path("out.jsonl"), 1);
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(c.path("out.jsonl")).unwrap_or_default();
    assert!(c.stop().success());
    assert_eq!(lines.len(), 1, "{text}");
    assert!(text.contains("from-allowed-page"), "{text}");
    assert!(!text.contains("from-other-page"), "{text}");
}

#[test]
fn preflight_headers_and_compressed_bodies_follow_the_config() {
    let mut c = Collector::start(&config("https://*.example.com"), &[]);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{}/v1/traces", c.http);

    // A browser's preflight from an allowed origin.
    let r = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", "https://shop.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type,x-tenant")
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(h["access-control-allow-headers"], "content-type,x-tenant");
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");

    // A header that is not allowed, and an origin that is not: no CORS headers.
    for (origin, headers) in [
        ("https://shop.example.com", "authorization"),
        ("https://example.org", "content-type"),
    ] {
        let r = client
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", headers)
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{origin} {headers}"
        );
    }

    // Snappy (block and framed) and LZ4 bodies are accepted; gzip is not listed here.
    let body = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "compressed"}]}]}]})
    .to_string();
    let snappy_block = snap::raw::Encoder::new()
        .compress_vec(body.as_bytes())
        .unwrap();
    let mut snappy_framed = snap::write::FrameEncoder::new(Vec::new());
    snappy_framed.write_all(body.as_bytes()).unwrap();
    let snappy_framed = snappy_framed.into_inner().unwrap();
    let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
    lz4.write_all(body.as_bytes()).unwrap();
    let lz4 = lz4.finish().unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(body.as_bytes()).unwrap();
    let gzip = gzip.finish().unwrap();
    for (encoding, bytes, want) in [
        ("snappy", snappy_block, 200),
        ("snappy", snappy_framed, 200),
        ("lz4", lz4, 200),
        ("gzip", gzip, 415),
        ("", body.clone().into_bytes(), 200),
    ] {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .header("origin", "https://shop.example.com")
            .body(bytes);
        if !encoding.is_empty() {
            request = request.header("content-encoding", encoding);
        }
        let r = request.send().unwrap();
        assert_eq!(r.status(), want, "{encoding}");
        assert_eq!(r.headers()["x-served-by"], "sluice");
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://shop.example.com"
        );
    }
    let lines = json_lines(&c.path("out.jsonl"), 4);
    assert_eq!(lines.len(), 4);
    assert!(c.stop().success());
}
