//! The proxy-wasm layer: moves bytes between Envoy and the core, nothing more.
//! Every host call goes through `host`, which never panics.

mod exchange;
mod host;
mod metrics;

use crate::clock::Clock;
use crate::config::Settings;
use crate::limit::SharedStore;
use exchange::Exchange;
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::rc::Rc;

proxy_wasm::main! {{
    host_logger::install();
    proxy_wasm::set_root_context(|_| Box::new(Root { settings: None, metrics: Rc::default() }));
}}

/// One per worker (and one on the main thread): holds the validated configuration.
struct Root {
    settings: Option<Rc<Settings>>,
    metrics: Rc<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match host::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(bytes) => bytes,
            Err(e) => {
                log::error!(
                    "hookgate: cannot read the plugin configuration (host status {})",
                    e.0
                );
                return false;
            }
        };
        let settings = match Settings::parse(&bytes) {
            Ok(settings) => settings,
            Err(why) => {
                log::error!("hookgate: invalid plugin configuration: {why}");
                return false;
            }
        };
        if let Err(why) = settings.limiter.prepare(&HostStore) {
            log::error!("hookgate: cannot prepare the limit state: {why}");
            return false;
        }
        self.settings = Some(Rc::new(settings));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // The SDK panics on None; a context without settings answers every request with 500.
        Some(Box::new(Exchange::new(
            self.settings.clone(),
            self.metrics.clone(),
        )))
    }
}

/// Shared data of this vm_id: one limit for every worker.
struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), String> {
        host::get_shared_data(key)
            .map_err(|e| format!("shared data read failed (host status {})", e.0))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<bool, String> {
        host::set_shared_data(key, value, cas)
            .map_err(|e| format!("shared data write failed (host status {})", e.0))
    }
}

/// The host clock.
struct HostClock;

impl Clock for HostClock {
    fn now(&self) -> u64 {
        host::now_unix_nanos().map_or(0, |nanos| nanos / 1_000_000_000)
    }
}

/// `log` records go to Envoy's log through `proxy_log`, which never panics.
mod host_logger {
    use super::host;

    struct HostLogger;
    static LOGGER: HostLogger = HostLogger;

    pub fn install() {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Info);
        }
        std::panic::set_hook(Box::new(|info| {
            host::log(5, &format!("hookgate: panic: {info}"))
        }));
    }

    impl log::Log for HostLogger {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() <= log::max_level()
        }

        fn log(&self, record: &log::Record) {
            if self.enabled(record.metadata()) {
                // proxy-wasm levels: 0 trace .. 4 error, 5 critical.
                let level = 5 - record.level() as u32;
                host::log(level.min(4), &record.args().to_string());
            }
        }

        fn flush(&self) {}
    }
}
