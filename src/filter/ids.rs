//! Webhook ids unique across workers, Envoys and restarts, with no random source.

use super::host;
use crate::signing;
use std::cell::RefCell;

/// What makes this worker's generated webhook ids its own (see `next_id`).
struct IdSource {
    node: String,
    worker: u32,
    counter: u64,
}

thread_local! {
    static IDS: RefCell<Option<IdSource>> = const { RefCell::new(None) };
}

/// Shared data (one map per Envoy process and vm_id) where each worker's VM claims its number.
const WORKER_KEY: &str = "hookgate.signing.workers";

/// `msg_<host ns>_<node id>_<worker>_<counter>`. The node id (Envoy's `node.id`, as
/// `signing::id_node` spells it) tells Envoys
/// apart, the worker number (claimed once per VM by a compare-and-swap increment in shared data)
/// tells this Envoy's workers apart, the counter tells this worker's ids apart, and the host's
/// nanosecond time moves on across restarts.
pub fn next_id() -> String {
    let now = host::now_unix_nanos().unwrap_or(0);
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let source = ids.get_or_insert_with(|| IdSource {
            // Envoy 1.40 serves the node under `xds` (measured: `["node", "id"]` is empty in
            // every callback, `["xds", "node", "id"]` is `--service-node` or the bootstrap's).
            node: signing::id_node(
                &host::get_property(&["xds", "node", "id"])
                    .ok()
                    .flatten()
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
                    .unwrap_or_default(),
            ),
            worker: claim_worker(),
            counter: 0,
        });
        let id = signing::make_id(now, &source.node, source.worker, source.counter);
        source.counter = source.counter.wrapping_add(1);
        id
    })
}

/// Creates the worker-number counter if it is missing, from `on_configure` (the main thread's
/// configure runs before any worker serves). CAS does not protect creating a key, so two workers
/// claiming from a missing counter could both get 1; with the key made first, every claim is a
/// real compare-and-swap. Creating with a CAS token that no existing key can hold never
/// overwrites a counter that is already there.
pub fn prepare_worker_numbers() {
    if let Ok((None, _)) = host::get_shared_data(WORKER_KEY) {
        let _ = host::set_shared_data(WORKER_KEY, b"0", Some(u32::MAX));
    }
}

/// This VM's worker number: the shared counter's next value (bounded tries; 0 if none succeeds).
fn claim_worker() -> u32 {
    for _ in 0..64 {
        let Ok((value, cas)) = host::get_shared_data(WORKER_KEY) else {
            break;
        };
        let claimed = value
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok())
            .unwrap_or(0)
            .wrapping_add(1);
        if let Ok(true) = host::set_shared_data(WORKER_KEY, claimed.to_string().as_bytes(), cas) {
            return claimed;
        }
    }
    log::warn!("hookgate: no worker number for webhook ids; using 0");
    0
}
