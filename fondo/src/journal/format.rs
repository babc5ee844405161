//! The journal's file format (version 1, drawn in the module docs): the preamble,
//! frames with their length and CRC-32, the file, map and result records, and the
//! reader that stops at the first torn or corrupt frame. Pure: bytes in, bytes out.

use crate::error::{Error, Payload, Result, SerdeStep};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// The first bytes of every journal.
pub(super) const MAGIC: &[u8; 8] = b"FONDOJNL";
/// The format this fondo writes and reads.
pub(super) const VERSION: u32 = 1;
/// Magic and version.
pub(super) const PREAMBLE: usize = 12;
/// A frame's length and checksum.
pub(super) const FRAME_HEAD: usize = 8;

pub(super) const KIND_FILE: u8 = 1;
pub(super) const KIND_MAP: u8 = 2;
pub(super) const KIND_RESULT: u8 = 3;

/// What the file says of one map.
pub(super) struct MapOnRecord {
    pub(super) header: MapHeader,
    /// By position: the input's hash and where the encoded result lies in `data`.
    pub(super) results: Vec<Option<(u64, Range<usize>)>>,
    pub(super) done: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileHeader {
    pub(super) exe: crate::boundary::digest::ExeDigest,
    pub(super) exe_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MapHeader {
    pub(super) map: u32,
    pub(super) function: String,
    pub(super) code: i64,
    pub(super) args: String,
    pub(super) result: String,
    pub(super) inputs: u64,
    pub(super) inputs_hash: u64,
}

/// What the bytes of a journal file hold.
pub(super) struct Parsed {
    pub(super) header: FileHeader,
    pub(super) maps: Vec<MapOnRecord>,
    /// Length of the sound part: everything after it is torn or corrupt.
    pub(super) valid: usize,
}

/// Whether a file is a journal, and what is in it.
pub(super) enum Contents {
    /// Empty, or a beginning torn before its file header was whole: nothing on record.
    Fresh,
    Journal(Parsed),
}

/// Appends one frame: room for its head, the kind, whatever `body` appends, then the
/// head filled in.
pub(super) fn push_frame(
    out: &mut Vec<u8>,
    kind: u8,
    body: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let at = out.len();
    out.extend_from_slice(&[0; FRAME_HEAD]);
    out.push(kind);
    if let Err(e) = body(out) {
        out.truncate(at);
        return Err(e);
    }
    let Ok(len) = u32::try_from(out.len() - at - FRAME_HEAD) else {
        out.truncate(at);
        return Err("a record of 4 GiB or more".into());
    };
    let len = len.to_le_bytes();
    let crc = frame_crc(len, &out[at + FRAME_HEAD..]);
    out[at..at + 4].copy_from_slice(&len);
    out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

pub(super) fn frame_crc(len: [u8; 4], body: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(body);
    crc.finalize()
}

/// Appends a result frame; a result whose `Serialize` fails (or panics) is that
/// task's error, and appends nothing.
pub(super) fn push_result<R: Serialize>(
    out: &mut Vec<u8>,
    map: u32,
    position: usize,
    input_hash: u64,
    value: &R,
) -> Result<()> {
    push_frame(out, KIND_RESULT, |body| {
        leb128(body, u64::from(map));
        leb128(body, position as u64);
        body.extend_from_slice(&input_hash.to_le_bytes());
        match crate::panic::catch(|| crate::boundary::item::encode_into(body, value)) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(caught) => Err(format!("panicked: {}", caught.message)),
        }
    })
    .map_err(|message| Error::Serialization {
        what: Payload::Result,
        step: SerdeStep::Serialize,
        type_name: std::any::type_name::<R>().to_owned(),
        message: format!("{message} (encoding it for the journal)"),
    })
}

/// Appends a header's postcard encoding.
pub(super) fn encode_header<H: Serialize>(
    body: &mut Vec<u8>,
    header: &H,
) -> std::result::Result<(), String> {
    crate::boundary::item::encode_into(body, header).map_err(|e| e.to_string())
}

pub(super) fn leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn read_leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The sound frame at `at`: its body's range and where the next frame starts; `None`
/// if it is incomplete or its checksum fails.
pub(super) fn frame_at(data: &[u8], at: usize) -> Option<(Range<usize>, usize)> {
    let head = data.get(at..at.checked_add(FRAME_HEAD)?)?;
    let len: [u8; 4] = head[..4].try_into().ok()?;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let body_len = u32::from_le_bytes(len) as usize;
    let start = at + FRAME_HEAD;
    let end = start.checked_add(body_len)?;
    let body = data.get(start..end)?;
    (body_len > 0 && frame_crc(len, body) == crc).then_some((start..end, end))
}

/// Reads a journal's bytes: the file header, the maps and results up to the first
/// frame that is torn, corrupt or out of place.
pub(super) fn parse(data: &[u8], shown: &str) -> Result<Contents> {
    let mut preamble = [0u8; PREAMBLE];
    preamble[..8].copy_from_slice(MAGIC);
    preamble[8..].copy_from_slice(&VERSION.to_le_bytes());
    let not_journal = || {
        Error::Journal(format!(
            "{shown} is not a fondo journal (it does not begin with `FONDOJNL`): refusing to \
             touch it"
        ))
    };
    if data.len() < 8 {
        return if MAGIC.starts_with(data) {
            Ok(Contents::Fresh)
        } else {
            Err(not_journal())
        };
    }
    if &data[..8] != MAGIC {
        return Err(not_journal());
    }
    if data.len() < PREAMBLE {
        // A version torn mid-write: only this fondo's own would have been written.
        return if preamble.starts_with(data) {
            Ok(Contents::Fresh)
        } else {
            Err(Error::Journal(format!(
                "journal {shown} has a torn version number"
            )))
        };
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        return Err(Error::Journal(format!(
            "journal {shown} has format version {version}; this fondo reads version {VERSION}"
        )));
    }
    let Some((body, mut at)) = frame_at(data, PREAMBLE) else {
        // Torn before its header was whole: no result was ever written after it.
        return Ok(Contents::Fresh);
    };
    let header = match data[body.clone()].split_first() {
        Some((&KIND_FILE, rest)) => postcard::from_bytes::<FileHeader>(rest).ok(),
        _ => None,
    }
    .ok_or_else(|| {
        Error::Journal(format!(
            "journal {shown} is corrupt: its first record is not its header"
        ))
    })?;
    let mut maps: Vec<MapOnRecord> = Vec::new();
    let mut valid = at;
    while let Some((body, next)) = frame_at(data, at) {
        let Some((&kind, rest)) = data[body.clone()].split_first() else {
            break;
        };
        let sound = match kind {
            KIND_MAP => match postcard::from_bytes::<MapHeader>(rest) {
                Ok(h) if h.map as usize == maps.len() && usize::try_from(h.inputs).is_ok() => {
                    let inputs = h.inputs as usize;
                    let mut results = Vec::new();
                    if results.try_reserve_exact(inputs).is_err() {
                        false
                    } else {
                        results.resize(inputs, None);
                        maps.push(MapOnRecord {
                            header: h,
                            results,
                            done: 0,
                        });
                        true
                    }
                }
                _ => false,
            },
            KIND_RESULT => {
                let mut r = rest;
                let fields = read_leb128(&mut r).zip(read_leb128(&mut r));
                match (fields, r.split_first_chunk::<8>()) {
                    (Some((map, position)), Some((hash, value))) => {
                        let value_at = body.end - value.len();
                        match usize::try_from(map).ok().and_then(|m| maps.get_mut(m)) {
                            Some(m) => match usize::try_from(position)
                                .ok()
                                .and_then(|p| m.results.get_mut(p))
                            {
                                Some(slot) => {
                                    if slot.is_none() {
                                        *slot =
                                            Some((u64::from_le_bytes(*hash), value_at..body.end));
                                        m.done += 1;
                                    }
                                    true
                                }
                                None => false,
                            },
                            None => false,
                        }
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if !sound {
            break;
        }
        at = next;
        valid = next;
    }
    Ok(Contents::Journal(Parsed {
        header,
        maps,
        valid,
    }))
}
