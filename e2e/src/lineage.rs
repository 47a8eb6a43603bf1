//! An OpenLineage receiver on loopback for the operator this test process starts: it keeps every
//! event POSTed to it, with the `Authorization` header, and refuses every fourth request with 503
//! so that the operator's retries are exercised on every run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The API key the shared operator is given (through `SLUICE_LINEAGE_API_KEY`).
pub const API_KEY: &str = "e2e-lineage-key";

/// One event received.
#[derive(Clone, Debug)]
pub struct Received {
    pub authorization: Option<String>,
    pub event: serde_json::Value,
}

struct Receiver {
    url: String,
    events: Mutex<Vec<Received>>,
    requests: Mutex<u64>,
}

static RECEIVER: OnceLock<Receiver> = OnceLock::new();

fn receiver() -> &'static Receiver {
    RECEIVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the lineage receiver");
        let url = format!("http://{}/api/v1/lineage", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream));
            }
        });
        Receiver { url, events: Mutex::default(), requests: Mutex::default() }
    })
}

/// The endpoint URL (the receiver starts on first use).
pub fn url() -> String {
    receiver().url.clone()
}

/// Every event received so far.
pub fn events() -> Vec<Received> {
    receiver().events.lock().expect("events").clone()
}

fn serve(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut stream = stream;
    // One connection may carry several requests (keep-alive).
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut authorization) = (0usize, None);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "authorization" => authorization = Some(value.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let n = {
            let mut requests = receiver().requests.lock().expect("requests");
            *requests += 1;
            *requests
        };
        let status = if !request_line.starts_with("POST /api/v1/lineage ") {
            "404 Not Found"
        } else if n % 4 == 0 {
            "503 Service Unavailable"
        } else {
            match serde_json::from_slice(&body) {
                Ok(event) => {
                    receiver().events.lock().expect("events").push(Received { authorization, event });
                    "201 Created"
                }
                Err(_) => "400 Bad Request",
            }
        };
        let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// Validates events with the official OpenLineage Python client (`e2e/lineage/validate.py`, in
/// the virtualenv `e2e/lineage/venv.sh` caches): each is structured into the client's `RunEvent`
/// model and serialised back, and must come back unchanged. Returns the script's report.
pub fn validate_with_openlineage_client(events: &[serde_json::Value]) -> Result<String, String> {
    let root = crate::cluster::repo_root();
    let venv = std::process::Command::new("bash")
        .arg(root.join("e2e/lineage/venv.sh"))
        .output()
        .map_err(|e| format!("venv.sh: {e}"))?;
    if !venv.status.success() {
        return Err(format!("venv.sh failed: {}", String::from_utf8_lossy(&venv.stderr)));
    }
    let python = PathBuf::from(String::from_utf8_lossy(&venv.stdout).trim().to_string());
    let input = crate::cluster::artifacts_dir().join("lineage-events.json");
    std::fs::write(&input, serde_json::to_vec_pretty(events).expect("json")).map_err(|e| e.to_string())?;
    let out = std::process::Command::new(python)
        .arg(root.join("e2e/lineage/validate.py"))
        .arg(&input)
        .output()
        .map_err(|e| format!("validate.py: {e}"))?;
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(report) } else { Err(report) }
}
