//! The log's folder: finding and checking segments on open, cutting a torn tail, starting new
//! segments, and deleting old ones.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

use crate::{
    Lsn, Replay, WalError,
    format::{SEGMENT_HEADER_BYTES, read_frames, read_header, segment_header},
};

const SUFFIX: &str = ".wal";

/// A closed segment: every record in it is older than `end_lsn`.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    pub end_lsn: Lsn,
    pub bytes: u64,
}

/// The segments of an open log; the last one is being appended to.
#[derive(Debug)]
pub(crate) struct Segments {
    pub dir: PathBuf,
    pub sealed: Vec<Sealed>,
    pub active: File,
    pub active_path: PathBuf,
    pub active_first_lsn: Lsn,
    pub active_len: u64,
}

fn segment_path(dir: &Path, first_lsn: Lsn) -> PathBuf {
    dir.join(format!("{first_lsn:020}{SUFFIX}"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| WalError::io(dir, error))
}

/// The wall clock in microseconds: the first LSN of a brand-new log (see [`Lsn`]).
fn fresh_start() -> Lsn {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| {
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX / 2)
        })
}

impl Segments {
    /// Opens (creating if needed) the log in `dir` and reads back every record in it.
    pub fn open(dir: &Path) -> Result<(Segments, Replay), WalError> {
        std::fs::create_dir_all(dir).map_err(|error| WalError::io(dir, error))?;
        let mut found: Vec<(Lsn, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|error| WalError::io(dir, error))? {
            let entry = entry.map_err(|error| WalError::io(dir, error))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
                continue;
            };
            let Ok(first) = stem.parse::<Lsn>() else {
                continue;
            };
            found.push((first, entry.path()));
        }
        found.sort();

        let mut replay = Replay::default();
        let mut sealed = Vec::new();
        let mut expected: Option<Lsn> = None;
        let count = found.len();
        let mut active = None;
        for (position, (named_first, path)) in found.into_iter().enumerate() {
            let is_last = position + 1 == count;
            let bytes = std::fs::read(&path).map_err(|error| WalError::io(&path, error))?;
            let corrupt = |offset: u64, reason: String| WalError::Corrupt {
                path: path.clone(),
                offset,
                reason,
            };
            let first = match read_header(&bytes) {
                Ok(first) if first == named_first => first,
                Ok(first) => {
                    return Err(corrupt(
                        0,
                        format!("header says lsn {first}, name says {named_first}"),
                    ));
                }
                // A crash between creating the newest segment and syncing its header.
                Err(reason) if is_last && bytes.len() <= SEGMENT_HEADER_BYTES => {
                    tracing::warn!(path = %path.display(), %reason, "removing a segment whose creation was interrupted");
                    std::fs::remove_file(&path).map_err(|error| WalError::io(&path, error))?;
                    replay.truncated_bytes += bytes.len() as u64;
                    continue;
                }
                Err(reason) => return Err(corrupt(0, reason)),
            };
            if let Some(expected) = expected
                && first != expected
            {
                return Err(corrupt(
                    0,
                    format!("starts at lsn {first}, the previous segment ends before {expected}"),
                ));
            }
            let frames = read_frames(&bytes, first);
            let end = first + frames.records.len() as u64;
            if let Some(reason) = frames.stopped {
                if !is_last {
                    return Err(corrupt(frames.valid_end, reason));
                }
                // The tail of the newest segment: a write the crash interrupted, never
                // acknowledged. Cut it so new frames follow the last whole one.
                let cut = bytes.len() as u64 - frames.valid_end;
                tracing::warn!(path = %path.display(), bytes = cut, %reason, "cutting a torn tail off the write-ahead log");
                replay.truncated_bytes += cut;
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|error| WalError::io(&path, error))?;
                file.set_len(frames.valid_end)
                    .and_then(|()| file.sync_all())
                    .map_err(|error| WalError::io(&path, error))?;
            }
            replay.records.extend(frames.records);
            expected = Some(end);
            if is_last {
                active = Some((path, first, frames.valid_end, end));
            } else {
                sealed.push(Sealed {
                    path,
                    first_lsn: first,
                    end_lsn: end,
                    bytes: frames.valid_end,
                });
            }
        }

        let (active, active_path, active_first_lsn, active_len, next_lsn) = match active {
            Some((path, first, len, end)) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(|error| WalError::io(&path, error))?;
                (file, path, first, len, end)
            }
            None => {
                let first = expected.unwrap_or_else(fresh_start);
                let (file, path) = create_segment(dir, first)?;
                (file, path, first, SEGMENT_HEADER_BYTES as u64, first)
            }
        };
        let segments = Segments {
            dir: dir.to_owned(),
            sealed,
            active,
            active_path,
            active_first_lsn,
            active_len,
        };
        replay.next_lsn = next_lsn;
        Ok((segments, replay))
    }

    /// Seals the active segment and starts a new one whose first record will be `next_lsn`.
    pub fn rotate(&mut self, next_lsn: Lsn) -> Result<(), WalError> {
        let (file, path) = create_segment(&self.dir, next_lsn)?;
        let old_path = std::mem::replace(&mut self.active_path, path);
        self.active = file;
        self.sealed.push(Sealed {
            path: old_path,
            first_lsn: self.active_first_lsn,
            end_lsn: next_lsn,
            bytes: self.active_len,
        });
        self.active_first_lsn = next_lsn;
        self.active_len = SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }

    /// Deletes sealed segments all of whose records are below `end` (i.e. `lsn < end`).
    pub fn release_before(&mut self, end: Lsn) -> Result<usize, WalError> {
        let mut deleted = 0;
        while let Some(oldest) = self.sealed.first() {
            if oldest.end_lsn > end {
                break;
            }
            std::fs::remove_file(&oldest.path)
                .map_err(|error| WalError::io(&oldest.path, error))?;
            tracing::debug!(path = %oldest.path.display(), first_lsn = oldest.first_lsn, "deleted a committed log segment");
            self.sealed.remove(0);
            deleted += 1;
        }
        if deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(deleted)
    }

    /// Bytes of all segments on disk.
    pub fn bytes_on_disk(&self) -> u64 {
        self.sealed.iter().map(|segment| segment.bytes).sum::<u64>() + self.active_len
    }
}

fn create_segment(dir: &Path, first_lsn: Lsn) -> Result<(File, PathBuf), WalError> {
    let path = segment_path(dir, first_lsn);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|error| WalError::io(&path, error))?;
    file.write_all(&segment_header(first_lsn))
        .and_then(|()| file.sync_all())
        .map_err(|error| WalError::io(&path, error))?;
    sync_dir(dir)?;
    Ok((file, path))
}
