//! Hot restart of a test gateway: the next epoch of Envoy, on the same configuration file, takes
//! the listening sockets over from the running process.

use super::super::{eventually, http, EnvoyConfig};
use super::{envoy_process, Gateway};
use std::fs::OpenOptions;
use std::time::{Duration, Instant};

impl Gateway {
    /// Envoy with one worker that can be hot restarted (base id: this test process's id).
    pub fn start_hot_restartable(config: EnvoyConfig) -> Gateway {
        Gateway::launch(config, 1, &[], Some((std::process::id(), 0)))
    }

    /// Starts the next epoch; returns once the previous process has exited and the new one
    /// answers on the admin port with its epoch.
    pub fn hot_restart(&mut self) {
        let (base_id, epoch) = self.hot_restart.expect("a gateway started hot-restartable");
        let next = epoch + 1;
        let append = |name: &str| {
            OpenOptions::new()
                .append(true)
                .open(self.dir.join(name))
                .unwrap()
        };
        let child = envoy_process(&self.dir.join("envoy.yaml"), 1, Some((base_id, next)))
            .current_dir(&self.dir)
            .stdout(append("access.log"))
            .stderr(append("envoy.log"))
            .spawn()
            .expect("start the next epoch");
        let mut previous = std::mem::replace(&mut self.child, child);
        self.hot_restart = Some((base_id, next));
        let deadline = Instant::now() + Duration::from_secs(30);
        while previous.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = previous.kill();
                let _ = previous.wait();
                panic!("epoch {epoch} still running 30 s after epoch {next} started");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eventually("the new epoch on the admin port", || {
            http::get(self.admin_port, "/server_info").is_ok_and(|reply| {
                reply.json()["command_line_options"]["restart_epoch"] == u64::from(next)
            })
        });
    }
}
