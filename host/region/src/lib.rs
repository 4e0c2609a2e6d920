//! The input region of `edge:handler`'s `handle-region` (layout in wit/handler.wit): the request
//! head and body written into the guest's linear memory. The host's encoder lives here, apart from
//! wasmtime, so that it is fuzzed against the guest SDK's decoder (fuzz/fuzz_targets/region_codec.rs).
#![forbid(unsafe_code)]

/// One request, borrowed from wherever the host holds it (a parse buffer, a test).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method token, for example `GET`.
    pub method: &'a str,
    /// Path and query, for example `/a?b=c`.
    pub path_with_query: &'a str,
    /// Header fields in order; repeats allowed. Names are passed to the guest in lowercase.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The decoded body.
    pub body: &'a [u8],
}

/// Size of the fixed part of the region head: method, path (offset and length each) and the
/// header count.
pub const FIXED: usize = 20;
/// Size of one header entry in the head table.
pub const ENTRY: usize = 16;

impl Request<'_> {
    /// Bytes the head takes in the input region.
    pub fn head_len(&self) -> usize {
        FIXED
            + self.headers.len() * ENTRY
            + self.method.len()
            + self.path_with_query.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
    }

    /// Write the head (layout in the WIT doc of `handle-region`) followed by the body into
    /// `region`, which is exactly `head_len() + body.len()` bytes long. Offsets in the head
    /// count from the region's start. Header names are lowercased on the way.
    pub fn encode(&self, region: &mut [u8]) {
        let data = self.encode_head(region);
        region[data..].copy_from_slice(self.body);
    }

    /// Write the head alone into the first `head_len()` bytes of `region`; returns its length.
    pub fn encode_head(&self, region: &mut [u8]) -> usize {
        let mut table = 0;
        let mut data = FIXED + self.headers.len() * ENTRY;
        put_bytes(region, &mut table, &mut data, self.method.as_bytes(), false);
        put_bytes(
            region,
            &mut table,
            &mut data,
            self.path_with_query.as_bytes(),
            false,
        );
        put_word(region, &mut table, self.headers.len());
        for (name, value) in self.headers {
            put_bytes(region, &mut table, &mut data, name.as_bytes(), true);
            put_bytes(region, &mut table, &mut data, value, false);
        }
        debug_assert_eq!(data, self.head_len());
        data
    }
}

fn put_word(region: &mut [u8], at: &mut usize, word: usize) {
    // The host sizes every region to at most u32::MAX bytes before encoding into it.
    debug_assert!(
        u32::try_from(word).is_ok(),
        "region offset {word} over 32 bits"
    );
    region[*at..*at + 4].copy_from_slice(&(word as u32).to_le_bytes());
    *at += 4;
}

/// Copy `bytes` to the data cursor and record their offset and length at the table cursor.
fn put_bytes(region: &mut [u8], table: &mut usize, data: &mut usize, bytes: &[u8], lower: bool) {
    let dst = &mut region[*data..*data + bytes.len()];
    dst.copy_from_slice(bytes);
    if lower {
        dst.make_ascii_lowercase();
    }
    put_word(region, table, *data);
    put_word(region, table, bytes.len());
    *data += bytes.len();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }

    #[test]
    fn region_layout_matches_the_contract() {
        let headers: &[(&str, &[u8])] = &[("Host", b"a.example"), ("X-Two", b"\xff\x00")];
        let req = Request {
            method: "POST",
            path_with_query: "/p?q=1",
            headers,
            body: b"BODY",
        };
        let head_len = req.head_len();
        let mut region = vec![0u8; head_len + 4];
        req.encode(&mut region);
        let s = |o: usize, l: usize| &region[word(&region, o)..word(&region, o) + word(&region, l)];
        assert_eq!(s(0, 4), b"POST");
        assert_eq!(s(8, 12), b"/p?q=1");
        assert_eq!(word(&region, 16), 2);
        assert_eq!(s(20, 24), b"host");
        assert_eq!(s(28, 32), b"a.example");
        assert_eq!(s(36, 40), b"x-two");
        assert_eq!(s(44, 48), b"\xff\x00");
        assert_eq!(&region[head_len..], b"BODY");
    }
}
