//! E2E: a gRPC client that sends the socket path as `:authority` (as gRPC-Go did before it learned
//! better: crictl/critest 1.26, older kubelets) still gets answers. The request is written by hand,
//! frame by frame, exactly as such a client puts it on the wire.

mod common;

use std::time::Duration;

use common::*;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.push(ty);
    f.push(flags);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn literal(out: &mut Vec<u8>, first: u8, value: &[u8]) {
    out.push(first);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_path_authority_is_accepted() {
    let d = Daemon::start().await;
    let mut s = tokio::net::UnixStream::connect(&d.socket).await.unwrap();
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http
    literal(&mut block, 0x44, b"/runtime.v1.RuntimeService/Version"); // :path
    literal(&mut block, 0x41, d.socket.to_str().unwrap().as_bytes()); // :authority = the socket path
                                                                      // Literals with incremental indexing and a new name: 0x40, name, value.
    for (name, value) in [
        (&b"content-type"[..], &b"application/grpc"[..]),
        (b"te", b"trailers"),
    ] {
        block.push(0x40);
        block.push(name.len() as u8);
        block.extend_from_slice(name);
        block.push(value.len() as u8);
        block.extend_from_slice(value);
    }

    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(frame(4, 0, 0, &[]));
    wire.extend(frame(1, 0x4, 1, &block));
    wire.extend(frame(0, 0x1, 1, &[0, 0, 0, 0, 0]));
    s.write_all(&wire).await.unwrap();

    let mut buf = Vec::new();
    let read = async {
        let mut tmp = [0u8; 4096];
        loop {
            let n = s.read(&mut tmp).await.unwrap();
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..n]);
            let mut pos = 0;
            while buf.len() - pos >= 9 {
                let len = u32::from_be_bytes([0, buf[pos], buf[pos + 1], buf[pos + 2]]) as usize;
                if buf.len() - pos < 9 + len {
                    break;
                }
                let (ty, stream) = (
                    buf[pos + 3],
                    u32::from_be_bytes([buf[pos + 5], buf[pos + 6], buf[pos + 7], buf[pos + 8]]),
                );
                let payload = buf[pos + 9..pos + 9 + len].to_vec();
                pos += 9 + len;
                match (ty, stream) {
                    (0, 1) if payload.len() >= 5 => return Some(Ok(payload)),
                    (3, 1) | (7, _) => {
                        return Some(Err(format!(
                            "frame type {ty} (RST_STREAM/GOAWAY): {payload:?}"
                        )))
                    }
                    _ => {}
                }
            }
            buf.drain(..pos);
        }
    };
    let got = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer in time");
    let payload = got
        .expect("connection closed without an answer")
        .unwrap_or_else(|e| panic!("request refused: {e}"));
    let resp = cri_api::v1::VersionResponse::decode(&payload[5..]).unwrap();
    assert_eq!(resp.runtime_name, "crius");
    d.shutdown().await;
}
