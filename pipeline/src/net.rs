//! Listen addresses as the OTel Collector writes them.

/// A listen endpoint in the form the OS resolver takes: Go's `:8888` (empty host: every
/// interface) becomes `0.0.0.0:8888`; anything else is returned as written.
pub fn listen_address(endpoint: &str) -> String {
    match endpoint.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => endpoint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_host_means_every_interface() {
        assert_eq!(listen_address(":8888"), "0.0.0.0:8888");
        assert_eq!(listen_address("localhost:4317"), "localhost:4317");
        assert_eq!(listen_address("[::1]:4317"), "[::1]:4317");
    }
}
