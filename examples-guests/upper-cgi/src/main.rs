//! A CGI program, standard library only: reads the request body on stdin and prints it in
//! uppercase, with no header block, so the host answers 200 with the output as the body.
//!
//! Run CGI style, a WASI command's stdout is its response. Without a header block the output is
//! the body as it is; a body that starts like a header block (`a: b`, a blank line) would be
//! read as one, so a program whose output may do that prints `Content-Type` first.

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let mut body = Vec::new();
    std::io::stdin().lock().read_to_end(&mut body)?;
    body.make_ascii_uppercase();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&body)?;
    stdout.flush()
}
