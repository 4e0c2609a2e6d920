use super::*;
use std::io::{Read, Write};

#[test]
fn accept_receive_and_send_through_the_ring() {
    let listener = crate::net::reuseport_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut ring = Uring::new(UringConfig {
        buffers: 4,
        buffer_size: 8,
        ..UringConfig::default()
    })
    .unwrap();
    ring.accept_multi(&listener).unwrap();
    let client = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"hello, ring: more than one buffer").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap();
        back
    });
    let mut events = Vec::new();
    let mut conn = None;
    let mut received = Vec::new();
    let mut eof = false;
    while !eof {
        ring.submit_and_wait(1).unwrap();
        ring.drain(&mut events);
        for event in events.drain(..) {
            match event {
                Event::Accepted { result, .. } => {
                    let fd = result.unwrap();
                    ring.recv_multi(7, &fd).unwrap();
                    conn = Some(fd);
                }
                Event::Received {
                    token,
                    result,
                    more,
                } => {
                    assert_eq!(token, 7);
                    match result {
                        Ok(Some(lease)) => {
                            received.extend_from_slice(ring.leased(&lease));
                            ring.recycle(lease);
                            if !more {
                                ring.recv_multi(7, conn.as_ref().unwrap()).unwrap();
                            }
                        }
                        Ok(None) => eof = true,
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            ring.recv_multi(7, conn.as_ref().unwrap()).unwrap();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(received, b"hello, ring: more than one buffer");
    ring.send(7, conn.as_ref().unwrap(), received.clone(), 6)
        .unwrap();
    let mut sent = None;
    while sent.is_none() {
        ring.submit_and_wait(1).unwrap();
        ring.drain(&mut events);
        for event in events.drain(..) {
            if let Event::Sent { result, buf, .. } = event {
                assert_eq!(buf, received);
                sent = Some(result.unwrap());
            }
        }
    }
    assert_eq!(sent, Some(received.len() - 6));
    drop(conn);
    assert_eq!(client.join().unwrap(), &received[6..]);
}
