//! A minimal HTTP/1.1 client and parser over std sockets (timeouts on every read).

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }
}

pub fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(stream)
}

/// A connection to the gateway on 127.0.0.1 from the given local address (the caller's network,
/// as Envoy sees it).
pub fn connect_from(source: &str, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Posts an event to the gateway on `port` from the given local address (the caller's network,
/// as Envoy sees it).
pub fn post_from(source: &str, port: u16, body: &str) -> Reply {
    let mut stream = connect_from(source, port);
    stream
        .write_all(&post_request("/", body.as_bytes(), &[]))
        .unwrap();
    read_reply(&mut BufReader::new(stream)).unwrap()
}

pub fn raw(port: u16, request: &[u8]) -> io::Result<Reply> {
    let mut stream = connect(port)?;
    stream.write_all(request)?;
    read_reply(&mut BufReader::new(stream))
}

pub fn get(port: u16, path: &str) -> io::Result<Reply> {
    raw(
        port,
        format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn post(port: u16, path: &str, body: &[u8], headers: &[(&str, &str)]) -> io::Result<Reply> {
    raw(port, &post_request(path, body, headers))
}

/// A POST of `body` (JSON unless `headers` name another content-type), `connection: close`.
pub fn post_request(path: &str, body: &[u8], headers: &[(&str, &str)]) -> Vec<u8> {
    let mut request = format!("POST {path} HTTP/1.1\r\nhost: gateway\r\nconnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        request.push_str("content-type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// `count` posts of `body` over the `ports` in turn, each on its own connection, all arriving
/// together: every request is written but its last byte, then the last bytes go at once (so every
/// request waits in an Envoy worker first). The replies, in no particular order.
pub fn post_simultaneously(ports: &[u16], body: &str, count: usize) -> Vec<Reply> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(count));
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let (barrier, port) = (barrier.clone(), ports[i % ports.len()]);
            let request = post_request("/", body.as_bytes(), &[]);
            std::thread::spawn(move || {
                let (head, last) = request.split_at(request.len() - 1);
                let mut stream = connect(port).unwrap();
                stream.write_all(head).unwrap();
                barrier.wait();
                stream.write_all(last).unwrap();
                read_reply(&mut BufReader::new(stream)).unwrap()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Reads the head of a request or response: the first line and the headers.
pub fn read_head(reader: &mut impl BufRead) -> io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    if reader.read_line(&mut first)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok((first.trim_end().to_string(), headers));
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "too many headers",
    ))
}

/// Reads a body framed by content-length or chunked encoding (or to the end, for replies).
pub fn read_body(
    reader: &mut impl BufRead,
    headers: &[(String, String)],
    to_end: bool,
) -> io::Result<Vec<u8>> {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        for _ in 0..100_000 {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            chunk.truncate(size);
            body.extend_from_slice(&chunk);
            if size == 0 {
                return Ok(body);
            }
        }
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many chunks",
        ));
    }
    if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_end {
        reader.read_to_end(&mut body)?;
    }
    Ok(body)
}

pub fn read_reply(reader: &mut impl BufRead) -> io::Result<Reply> {
    let (status_line, headers) = read_head(reader)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let body = read_body(reader, &headers, true)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}
