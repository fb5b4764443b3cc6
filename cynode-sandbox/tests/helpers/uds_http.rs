//! A tiny static client run *inside* test sandboxes (the busybox test image has no
//! Unix-socket HTTP client). Built by the tests with `rustc -C target-feature=+crt-static`.
//!
//! uds-http http <socket> <METHOD> <path> [body]   -> prints "STATUS <code>" then the body
//! uds-http tcp <host:port>                        -> prints "connected" (exit 0) or the error (exit 1)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("http") if args.len() >= 5 => {
            let body = args.get(5).cloned().unwrap_or_default();
            let mut s = match UnixStream::connect(&args[2]) {
                Ok(s) => s,
                Err(e) => {
                    println!("error: {e}");
                    std::process::exit(1);
                }
            };
            let req = format!(
                "{} {} HTTP/1.1\r\nHost: sandbox\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                args[3],
                args[4],
                body.len(),
                body
            );
            s.write_all(req.as_bytes()).expect("write");
            let mut resp = Vec::new();
            s.read_to_end(&mut resp).expect("read");
            let text = String::from_utf8_lossy(&resp);
            let status = text.split(' ').nth(1).unwrap_or("?");
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
            println!("STATUS {status}");
            println!("{body}");
        }
        Some("tcp") if args.len() >= 3 => {
            let addr = args[2].parse().expect("host:port");
            match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(_) => println!("connected"),
                Err(e) => {
                    println!("error: {e}");
                    std::process::exit(1);
                }
            }
        }
        _ => {
            eprintln!("usage: uds-http http <socket> <METHOD> <path> [body] | tcp <host:port>");
            std::process::exit(2);
        }
    }
}
