//! A real HTTP receiver on loopback that records what it got and answers as told.

use super::http::{read_body, read_head};
use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Answer with this status, these headers and this body.
    Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Wait, then answer.
    Delay(Duration, Box<Behaviour>),
    /// Read the request, then close the connection without answering.
    CloseAfterRead,
}

impl Behaviour {
    pub fn json(status: u16, body: &str) -> Behaviour {
        Behaviour::with_type(status, "application/json", body.as_bytes())
    }

    pub fn with_type(status: u16, content_type: &str, body: &[u8]) -> Behaviour {
        Behaviour::Answer {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.to_vec(),
        }
    }
}

/// What the receiver got.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub request_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    pub port: u16,
    pub records: Arc<Mutex<Vec<Recorded>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    pub connections: Arc<Mutex<u32>>,
}

impl Receiver {
    /// Listens on 127.0.0.1 (or another loopback address) on a free port.
    pub fn start(behaviour: Behaviour) -> Receiver {
        Self::start_on("127.0.0.1", behaviour)
    }

    pub fn start_on(address: &str, behaviour: Behaviour) -> Receiver {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = Receiver {
            port,
            records: Arc::default(),
            behaviour: Arc::new(Mutex::new(behaviour)),
            connections: Arc::default(),
        };
        let (records, behaviour, connections) = (
            receiver.records.clone(),
            receiver.behaviour.clone(),
            receiver.connections.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                *connections.lock().unwrap() += 1;
                let (records, behaviour) = (records.clone(), behaviour.clone());
                std::thread::spawn(move || serve(stream, &records, &behaviour));
            }
        });
        receiver
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn records(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn serve(stream: TcpStream, records: &Mutex<Vec<Recorded>>, behaviour: &Mutex<Behaviour>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    for _ in 0..10_000 {
        let Ok((request_line, headers)) = read_head(&mut reader) else {
            return;
        };
        let Ok(body) = read_body(&mut reader, &headers, false) else {
            return;
        };
        records.lock().unwrap().push(Recorded {
            request_line,
            headers,
            body,
        });
        let behaviour = behaviour.lock().unwrap().clone();
        if !answer(&write_half, &behaviour) {
            return;
        }
    }
}

/// Answers one request; false when the connection is closed.
fn answer(mut stream: &TcpStream, behaviour: &Behaviour) -> bool {
    match behaviour {
        Behaviour::Answer {
            status,
            headers,
            body,
        } => {
            let mut head = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            stream.write_all(&bytes).is_ok()
        }
        Behaviour::Delay(wait, then) => {
            std::thread::sleep(*wait);
            answer(stream, then)
        }
        Behaviour::CloseAfterRead => {
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
    }
}
