//! The proxy-wasm layer: moves bytes between Envoy and the core, nothing more.
//! Every host call goes through `host`, which never panics.

mod host;
mod ids;
mod metrics;
mod stream;
mod support;
mod upstream;

use crate::clock::Clock;
use crate::config::Settings;
use crate::limit::etcd::{Call, Reply};
use crate::limit::SharedStore;
use crate::support::{is_support_config, SupportConfig};
use metrics::Metrics;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use std::cell::RefCell;
use std::rc::Rc;
use stream::Stream;

proxy_wasm::main! {{
    host_logger::install();
    proxy_wasm::set_root_context(|_| {
        Box::new(Root {
            settings: None,
            support: None,
            metrics: Rc::new(Metrics::new("default")),
            after_dns: false,
        })
    });
}}

/// How often each worker hands its counters to Envoy (`Metrics::flush`): `/stats` is at most
/// this far behind.
const TICK_MILLIS: u32 = 1_000;
/// How often the `tracked_webhooks` gauge is brought up to date (one scan of the table).
const SCAN_SECONDS: u64 = 10;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
}

/// One per worker (and one on the main thread): holds the validated configuration.
struct Root {
    settings: Option<Rc<Settings>>,
    /// Set on a support listener's filter (`"role": "support"`), which serves no events.
    support: Option<Rc<SupportConfig>>,
    metrics: Rc<Metrics>,
    /// This plugin is the check after DNS (`upstream::ROOT_ID`), not the engine-facing filter.
    after_dns: bool,
}

thread_local! {
    /// The engine filters' settings in this VM, by `limit.namespace`: a support listener's
    /// filter shares the VM (same vm_id and module) and serves the state of one of them.
    static GATEWAYS: RefCell<Vec<(String, Rc<Settings>)>> = const { RefCell::new(Vec::new()) };
}

/// The settings of the engine filter of this namespace, if one is configured in this VM.
fn gateway_settings(namespace: &str) -> Option<Rc<Settings>> {
    GATEWAYS.with(|gateways| {
        gateways
            .borrow()
            .iter()
            .find(|(ns, _)| ns == namespace)
            .map(|(_, settings)| settings.clone())
    })
}

/// Records (or replaces, after a configuration reload) the engine filter of a namespace.
fn publish_gateway(settings: &Rc<Settings>) {
    let namespace = settings.limiter.namespace().to_string();
    GATEWAYS.with(|gateways| {
        let mut gateways = gateways.borrow_mut();
        gateways.retain(|(ns, _)| *ns != namespace);
        gateways.push((namespace, settings.clone()));
    });
}

impl Context for Root {
    /// etcd's answer to the lease grant asked for ahead on the tick.
    fn on_http_call_response(&mut self, _token: u32, headers: usize, body_size: usize, _: usize) {
        let (status, body) = host::http_call_reply(headers, body_size);
        let reply = Reply {
            status,
            body: &body,
        };
        if let Some(etcd) = self.settings.as_ref().and_then(|s| s.etcd.as_ref()) {
            if let Err(why) = etcd.on_lease_ahead(reply) {
                log::warn!("hookgate: etcd lease asked for ahead not granted: {why}");
            }
        }
    }
}

/// One call to etcd through the engine filter's `state.cluster`.
fn dispatch_etcd(settings: &Settings, call: &Call) -> Result<(), String> {
    let timeout = std::time::Duration::from_millis(u64::from(settings.config.state.timeout_ms));
    let cluster = &settings.config.state.cluster;
    host::dispatch_http_call(cluster, call.path, call.body.as_bytes(), timeout)
        .map(|_| ())
        .map_err(|e| {
            format!(
                "etcd: call through cluster {cluster:?} failed (host status {})",
                e.0
            )
        })
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        host_logger::follow_host_level();
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
        if is_support_config(&bytes) {
            return match SupportConfig::parse(&bytes) {
                Ok(config) => {
                    self.support = Some(Rc::new(config));
                    true
                }
                Err(why) => {
                    log::error!("hookgate: invalid support plugin configuration: {why}");
                    false
                }
            };
        }
        let settings = match Settings::parse(&bytes) {
            Ok(settings) => settings,
            Err(why) => {
                log::error!("hookgate: invalid plugin configuration: {why}");
                return false;
            }
        };
        self.after_dns = host::get_property(&["plugin_root_id"])
            .ok()
            .flatten()
            .is_some_and(|id| id == upstream::ROOT_ID.as_bytes());
        if self.after_dns {
            // Only the destination policy is used here; the limit and ticks are the other's.
            self.settings = Some(Rc::new(settings));
            return true;
        }
        if let Err(why) = settings.limiter.prepare(&HostStore) {
            log::error!("hookgate: cannot prepare the limit state: {why}");
            return false;
        }
        ids::prepare_worker_numbers();
        self.metrics.flush();
        self.metrics = Rc::new(Metrics::new(settings.limiter.namespace()));
        let settings = Rc::new(settings);
        publish_gateway(&settings);
        self.settings = Some(settings);
        // SAFETY: a plain value; a failure only means no gauge.
        let status = unsafe { proxy_set_tick_period_milliseconds(TICK_MILLIS) };
        if status != 0 {
            log::warn!("hookgate: no tick, no tracked_webhooks gauge (host status {status})");
            self.metrics.unbatched();
        }
        true
    }

    /// Ticks come to the main thread's root context and to every worker's. Each first hands
    /// its worker's counters to Envoy, and with etcd asks for the worker's next lease when it is
    /// due (`limit::etcd::lease`); then whichever claims the scan period first (one CAS in
    /// shared data) scans the table and sets the gauge, which every context of the Envoy
    /// shares: one scan per period, not one per context.
    fn on_tick(&mut self) {
        host_logger::follow_host_level();
        self.metrics.flush();
        let Some(settings) = &self.settings else {
            return;
        };
        if let Some(call) = settings
            .etcd
            .as_ref()
            .and_then(|e| e.lease_ahead(HostClock.now()))
        {
            if let Err(why) = dispatch_etcd(settings, &call) {
                log::warn!("hookgate: cannot ask for an etcd lease ahead: {why}");
            }
        }
        let limiter = &settings.limiter;
        if !limiter.claim_scan(&HostStore, HostClock.now(), SCAN_SECONDS) {
            return;
        }
        match limiter.tracked(&HostStore, &HostClock) {
            Ok(count) => self.metrics.tracked_webhooks(count),
            Err(failure) => log::warn!("hookgate: cannot count tracked webhooks: {failure}"),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        if let Some(config) = &self.support {
            return Some(Box::new(support::SupportExchange::new(config.clone())));
        }
        if self.after_dns {
            return Some(Box::new(upstream::AfterDns::new(self.settings.clone())));
        }
        // The SDK panics on None; a context without settings answers every request with 500.
        Some(Box::new(Stream::new(
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

    /// Takes Envoy's level for this plugin (`-l`, `--component-log-level wasm:<level>`, the
    /// admin `/logging` endpoint), so that a record Envoy would drop is never formatted nor
    /// sent: the per-decision debug line costs nothing unless asked for. Called on configure
    /// and on every tick.
    pub fn follow_host_level() {
        let level = match host::log_level() {
            Ok(0) => log::LevelFilter::Trace,
            Ok(1) => log::LevelFilter::Debug,
            Ok(2) | Err(_) => log::LevelFilter::Info,
            Ok(3) => log::LevelFilter::Warn,
            Ok(_) => log::LevelFilter::Error,
        };
        log::set_max_level(level);
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
