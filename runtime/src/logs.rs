//! Container logs, in the format of Docker's json-file driver: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`. The shim
//! writes them ([`LogWriter`]); the daemon reads them ([`read`]). A line longer than 16 KiB is
//! split, and a last line without a newline is written without one, as Docker does.

use std::{
    borrow::Cow,
    collections::VecDeque,
    fs,
    io::{self, BufRead, BufReader, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use serde::{Deserialize, Serialize};

use crate::{
    clock,
    error::{Error, IoContext},
};

/// Docker splits log lines at 16 KiB; so do we.
const MAX_LINE: usize = 16 * 1024;

/// Which output of the container a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When the shim read the line, unix nanoseconds.
    pub time: i64,
    pub stream: LogStream,
    /// The text, without its trailing newline.
    pub line: String,
}

#[derive(Serialize, Deserialize)]
struct JsonLine<'a> {
    log: Cow<'a, str>,
    stream: LogStream,
    time: Cow<'a, str>,
}

/// Encodes one log record (with its final `\n`) in json-file format.
pub(crate) fn encode(time: i64, stream: LogStream, text: &[u8]) -> Vec<u8> {
    let record = JsonLine { log: String::from_utf8_lossy(text), stream, time: Cow::Owned(clock::format_rfc3339(time)) };
    let mut out = serde_json::to_vec(&record).expect("a struct of strings always serializes");
    out.push(b'\n');
    out
}

/// Cuts a byte stream into log records: at each newline, or every [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    fn push(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let take =
                data[..data.len().min(room)].iter().position(|&b| b == b'\n').map_or(data.len().min(room), |i| i + 1);
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.ends_with(b"\n") || self.pending.len() == MAX_LINE {
                emit(&self.pending);
                self.pending.clear();
            }
        }
    }

    fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending.clear();
        }
    }
}

/// Appends a container's output to its log file, line by line, stamped with the read time.
#[derive(Debug)]
pub(crate) struct LogWriter {
    file: fs::File,
    stdout: LineBuffer,
    stderr: LineBuffer,
}

impl LogWriter {
    pub(crate) fn open(path: &Path) -> io::Result<LogWriter> {
        let file = fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
        Ok(LogWriter { file, stdout: LineBuffer::default(), stderr: LineBuffer::default() })
    }

    /// Records `data`, read just now from `stream`; a trailing partial line waits for more.
    pub(crate) fn write(&mut self, stream: LogStream, data: &[u8]) -> io::Result<()> {
        let now = clock::now_ns();
        let mut out = Vec::new();
        let buffer = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        buffer.push(data, &mut |line| out.extend(encode(now, stream, line)));
        self.file.write_all(&out)
    }

    /// The stream ended: records its unfinished last line, if any.
    pub(crate) fn finish(&mut self, stream: LogStream) -> io::Result<()> {
        let now = clock::now_ns();
        let mut out = Vec::new();
        let buffer = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        buffer.finish(&mut |line| out.extend(encode(now, stream, line)));
        self.file.write_all(&out)
    }
}

/// Reads a container's log; with `tail`, only its last `tail` lines. Undecodable lines (a write
/// cut short by a crash) are skipped.
pub(crate) fn read(path: &Path, tail: Option<usize>) -> Result<Vec<LogEntry>, Error> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let mut entries = VecDeque::new();
    for line in BufReader::new(file).split(b'\n') {
        let line = line.context(|| format!("reading {}", path.display()))?;
        let Some(entry) = decode(&line) else { continue };
        if tail == Some(0) {
            break;
        }
        if tail.is_some_and(|n| entries.len() == n) {
            entries.pop_front();
        }
        entries.push_back(entry);
    }
    Ok(entries.into())
}

fn decode(line: &[u8]) -> Option<LogEntry> {
    let record: JsonLine<'_> = serde_json::from_slice(line).ok()?;
    let text = record.log.strip_suffix('\n').unwrap_or(&record.log);
    Some(LogEntry { time: clock::parse_rfc3339_ns(&record.time)?, stream: record.stream, line: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_docker_json_file() {
        let line = encode(1_704_164_645_123_456_789, LogStream::Stdout, b"hi \"there\"\n");
        assert_eq!(
            String::from_utf8(line).expect("utf8"),
            "{\"log\":\"hi \\\"there\\\"\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05.123456789Z\"}\n"
        );
        let entry = decode(&encode(7, LogStream::Stderr, b"oops\n")).expect("decodes");
        assert_eq!(entry, LogEntry { time: 7, stream: LogStream::Stderr, line: "oops".to_string() });
    }

    #[test]
    fn splits_lines_and_keeps_partials() {
        let mut buffer = LineBuffer::default();
        let mut lines = Vec::new();
        buffer.push(b"a\nb", &mut |l| lines.push(l.to_vec()));
        buffer.push(b"c\n\nd", &mut |l| lines.push(l.to_vec()));
        buffer.finish(&mut |l| lines.push(l.to_vec()));
        assert_eq!(lines, [&b"a\n"[..], b"bc\n", b"\n", b"d"]);

        let mut long = Vec::new();
        buffer.push(&vec![b'x'; MAX_LINE + 10], &mut |l| long.push(l.len()));
        buffer.finish(&mut |l| long.push(l.len()));
        assert_eq!(long, [MAX_LINE, 10]);
    }

    #[test]
    fn writes_and_tails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.json");
        let mut writer = LogWriter::open(&path).expect("open");
        writer.write(LogStream::Stdout, b"one\ntwo\nthr").expect("write");
        writer.write(LogStream::Stderr, b"err\n").expect("write");
        writer.finish(LogStream::Stdout).expect("finish");
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"log\":\"torn"))
            .expect("append garbage");

        let all = read(&path, None).expect("read");
        let lines: Vec<_> = all.iter().map(|e| (e.stream, e.line.as_str())).collect();
        assert_eq!(
            lines,
            [
                (LogStream::Stdout, "one"),
                (LogStream::Stdout, "two"),
                (LogStream::Stderr, "err"),
                (LogStream::Stdout, "thr"),
            ]
        );
        let last: Vec<_> = read(&path, Some(2)).expect("read").into_iter().map(|e| e.line).collect();
        assert_eq!(last, ["err", "thr"]);
        assert!(read(&path, Some(0)).expect("read").is_empty());
        assert!(read(&dir.path().join("missing"), None).expect("read").is_empty());
    }
}
