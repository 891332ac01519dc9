//! Backfill: historical click logs (CSV, NDJSON or Parquet files, gzip detected) into the lake.
//!
//! A reader thread parses files in order and hands chunks of validated events to the async side,
//! which writes them to the lake; the two overlap, and the bounded hand-off keeps memory at about
//! two chunks. A bad row is counted and reported (file, line, column, why) and never stops the
//! import; a file that cannot be read at all, or lacks a mapped column, stops it with an error
//! naming the file.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, TimeUnit as ArrowTimeUnit};
use chrono::DateTime;
use newsrec_event::{
    ClickEvent, EventType, FieldError, derive_event_id, validate_id, validate_ts_ms,
};
use newsrec_lake::Lake;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// How many row errors the report quotes in full (all are counted).
const QUOTED_ERRORS: usize = 20;

/// The file format of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    Csv,
    Ndjson,
    Parquet,
}

/// How the time column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Epoch milliseconds.
    Millis,
    /// Epoch seconds (fractions allowed).
    Seconds,
    /// RFC 3339 text.
    Rfc3339,
}

/// Which source columns become which event fields.
#[derive(Debug, Clone)]
pub struct ColumnMap {
    pub user: String,
    pub item: String,
    pub time: String,
    pub unit: TimeUnit,
    pub session: Option<String>,
}

/// Settings of one import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub format: ImportFormat,
    pub columns: ColumnMap,
    /// Writer name of the lake objects (`<writer>-<seq>.parquet`).
    pub writer: String,
    /// Events handed to the lake per write.
    pub chunk_events: usize,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub files: usize,
    pub rows: u64,
    pub imported: u64,
    pub rejected: u64,
    pub objects: usize,
    /// Earliest and latest event time imported (epoch ms), when anything was imported.
    pub time_range: Option<(i64, i64)>,
    /// Imported events per UTC day.
    pub events_per_day: std::collections::BTreeMap<chrono::NaiveDate, u64>,
    /// The first row errors, in full: `clicks.csv.gz:7: column "click_timestamp": ...`.
    pub sample_errors: Vec<String>,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: column {column:?} not found (columns are: {available})")]
    MissingColumn {
        path: String,
        column: String,
        available: String,
    },
    #[error(transparent)]
    Lake(#[from] newsrec_lake::LakeError),
}

/// Progress callback: total bytes of input read so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Imports `files` into `lake`.
pub async fn import_files(
    lake: &Lake,
    files: Vec<PathBuf>,
    options: ImportOptions,
    progress: Progress,
) -> Result<ImportReport, ImportError> {
    let (sender, mut chunks) = tokio::sync::mpsc::channel::<Vec<ClickEvent>>(1);
    let reader_options = options.clone();
    let reader =
        tokio::task::spawn_blocking(move || read_all(&files, &reader_options, &sender, &progress));
    let mut objects = 0;
    let mut seq = 0u64;
    while let Some(chunk) = chunks.recv().await {
        objects += lake
            .write_events(&options.writer, seq, &[Arc::new(chunk)])
            .await?
            .len();
        seq += 1;
    }
    let mut report = reader.await.map_err(|join| ImportError::File {
        path: "(reader thread)".into(),
        reason: join.to_string(),
    })??;
    report.objects = objects;
    Ok(report)
}

/// Counts bytes read from the underlying file for progress reporting.
struct CountingReader<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Collects events into chunks and row errors into the report.
struct Sink<'a> {
    chunk: Vec<ClickEvent>,
    chunk_events: usize,
    sender: &'a tokio::sync::mpsc::Sender<Vec<ClickEvent>>,
    report: ImportReport,
}

impl Sink<'_> {
    fn row(
        &mut self,
        location: impl FnOnce() -> String,
        outcome: Result<ClickEvent, String>,
    ) -> bool {
        self.report.rows += 1;
        match outcome {
            Ok(event) => {
                self.report.imported += 1;
                let (first, last) = self
                    .report
                    .time_range
                    .get_or_insert((event.ts_ms, event.ts_ms));
                *first = (*first).min(event.ts_ms);
                *last = (*last).max(event.ts_ms);
                if let Some(time) = DateTime::from_timestamp_millis(event.ts_ms) {
                    *self
                        .report
                        .events_per_day
                        .entry(time.date_naive())
                        .or_default() += 1;
                }
                self.chunk.push(event);
                if self.chunk.len() >= self.chunk_events {
                    return self.send();
                }
            }
            Err(reason) => {
                self.report.rejected += 1;
                if self.report.sample_errors.len() < QUOTED_ERRORS {
                    self.report
                        .sample_errors
                        .push(format!("{}: {reason}", location()));
                }
            }
        }
        true
    }

    /// Hands the chunk over; false when the writer side has gone (it failed).
    fn send(&mut self) -> bool {
        let chunk = std::mem::take(&mut self.chunk);
        chunk.is_empty() || self.sender.blocking_send(chunk).is_ok()
    }
}

fn read_all(
    files: &[PathBuf],
    options: &ImportOptions,
    sender: &tokio::sync::mpsc::Sender<Vec<ClickEvent>>,
    progress: &Progress,
) -> Result<ImportReport, ImportError> {
    let counter = Arc::new(AtomicU64::new(0));
    let mut sink = Sink {
        chunk: Vec::with_capacity(options.chunk_events.min(1 << 20)),
        chunk_events: options.chunk_events.max(1),
        sender,
        report: ImportReport::default(),
    };
    for path in files {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let file_error = |reason: String| ImportError::File {
            path: path.display().to_string(),
            reason,
        };
        match options.format {
            ImportFormat::Csv | ImportFormat::Ndjson => {
                let file = File::open(path).map_err(|error| file_error(error.to_string()))?;
                let raw = CountingReader {
                    inner: file,
                    counter: Arc::clone(&counter),
                };
                let mut buffered = BufReader::with_capacity(1 << 16, raw);
                let is_gzip = buffered
                    .fill_buf()
                    .map_err(|error| file_error(error.to_string()))?
                    .starts_with(&[0x1f, 0x8b]);
                let reader: Box<dyn Read> = if is_gzip {
                    Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
                } else {
                    Box::new(buffered)
                };
                let tick = || progress(counter.load(Ordering::Relaxed));
                let alive = if options.format == ImportFormat::Csv {
                    read_csv(path, &name, reader, &options.columns, &mut sink, &tick)?
                } else {
                    read_ndjson(&name, reader, &options.columns, &mut sink, &tick)?
                };
                if !alive {
                    break;
                }
            }
            ImportFormat::Parquet => {
                let file = File::open(path).map_err(|error| file_error(error.to_string()))?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                if !read_parquet(path, &name, file, &options.columns, &mut sink)? {
                    break;
                }
                counter.fetch_add(size, Ordering::Relaxed);
                progress(counter.load(Ordering::Relaxed));
            }
        }
        sink.report.files += 1;
    }
    sink.send();
    Ok(sink.report)
}

fn read_csv(
    path: &Path,
    name: &str,
    reader: Box<dyn Read>,
    columns: &ColumnMap,
    sink: &mut Sink<'_>,
    tick: &dyn Fn(),
) -> Result<bool, ImportError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|error| ImportError::File {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?
        .clone();
    let find = |column: &str| {
        headers
            .iter()
            .position(|header| header == column)
            .ok_or_else(|| ImportError::MissingColumn {
                path: path.display().to_string(),
                column: column.to_owned(),
                available: headers.iter().collect::<Vec<_>>().join(", "),
            })
    };
    let user = find(&columns.user)?;
    let item = find(&columns.item)?;
    let time = find(&columns.time)?;
    let session = columns.session.as_deref().map(find).transpose()?;
    let mut record = csv::StringRecord::new();
    let mut since_tick = 0u32;
    loop {
        let line = csv.position().line();
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let field = |index: usize| record.get(index).unwrap_or("");
                let outcome = build_event(
                    columns,
                    field(user),
                    field(item),
                    &TimeValue::Text(field(time)),
                    session.map(field),
                );
                if !sink.row(|| format!("{name}:{line}"), outcome) {
                    return Ok(false);
                }
            }
            Err(error) => {
                if !sink.row(
                    || format!("{name}:{line}"),
                    Err(format!("malformed CSV row: {error}")),
                ) {
                    return Ok(false);
                }
                if error.is_io_error() {
                    return Err(ImportError::File {
                        path: path.display().to_string(),
                        reason: error.to_string(),
                    });
                }
            }
        }
        since_tick += 1;
        if since_tick == 10_000 {
            since_tick = 0;
            tick();
        }
    }
    tick();
    Ok(true)
}

fn read_ndjson(
    name: &str,
    reader: Box<dyn Read>,
    columns: &ColumnMap,
    sink: &mut Sink<'_>,
    tick: &dyn Fn(),
) -> Result<bool, ImportError> {
    let mut lines = BufReader::new(reader);
    let mut line = String::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let read = lines.read_line(&mut line);
        number += 1;
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                sink.row(
                    || format!("{name}:{number}"),
                    Err(format!("unreadable line: {error}")),
                );
                break;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        let outcome = match serde_json::from_str::<Value>(&line) {
            Err(error) => Err(format!("malformed JSON: {error}")),
            Ok(value) => {
                let get = |column: &str| value.get(column).filter(|v| !v.is_null());
                let text = |column: &str| match get(column) {
                    Some(Value::String(text)) => Ok(text.clone()),
                    Some(Value::Number(number)) => Ok(number.to_string()),
                    Some(other) => Err(format!(
                        "column {column:?}: expected a string or number, got {other}"
                    )),
                    None => Err(format!("column {column:?}: is required but missing")),
                };
                let time = match get(&columns.time) {
                    Some(Value::Number(number)) => {
                        Ok(TimeValue::Number(number.as_f64().unwrap_or(f64::NAN)))
                    }
                    Some(Value::String(text)) => Ok(TimeValue::Owned(text.clone())),
                    Some(other) => Err(format!(
                        "column {:?}: expected a time, got {other}",
                        columns.time
                    )),
                    None => Err(format!(
                        "column {:?}: is required but missing",
                        columns.time
                    )),
                };
                let session = match columns.session.as_deref() {
                    Some(column) => get(column).map(|_| text(column)).transpose(),
                    None => Ok(None),
                };
                match (text(&columns.user), text(&columns.item), time, session) {
                    (Ok(user), Ok(item), Ok(time), Ok(session)) => {
                        build_event(columns, &user, &item, &time, session.as_deref())
                    }
                    (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => Err(e),
                }
            }
        };
        if !sink.row(|| format!("{name}:{number}"), outcome) {
            return Ok(false);
        }
        if number.is_multiple_of(10_000) {
            tick();
        }
    }
    tick();
    Ok(true)
}

fn read_parquet(
    path: &Path,
    name: &str,
    file: File,
    columns: &ColumnMap,
    sink: &mut Sink<'_>,
) -> Result<bool, ImportError> {
    let file_error = |reason: String| ImportError::File {
        path: path.display().to_string(),
        reason,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|error| file_error(error.to_string()))?;
    let schema = Arc::clone(builder.schema());
    for column in [
        Some(&columns.user),
        Some(&columns.item),
        Some(&columns.time),
        columns.session.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if schema.index_of(column).is_err() {
            return Err(ImportError::MissingColumn {
                path: path.display().to_string(),
                column: column.clone(),
                available: schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let reader = builder
        .build()
        .map_err(|error| file_error(error.to_string()))?;
    let mut row_base = 0u64;
    for batch in reader {
        let batch = batch.map_err(|error| file_error(error.to_string()))?;
        let strings = |column: &str| as_strings(&batch, column).map_err(&file_error);
        let users = strings(&columns.user)?;
        let items = strings(&columns.item)?;
        let session = columns.session.as_deref().map(strings).transpose()?;
        let times = time_values(&batch, &columns.time).map_err(&file_error)?;
        for row in 0..batch.num_rows() {
            let outcome = build_event(
                columns,
                cell(&users, row),
                cell(&items, row),
                &times(row),
                session.as_ref().map(|s| cell(s, row)),
            );
            if !sink.row(|| format!("{name}:row {}", row_base + row as u64), outcome) {
                return Ok(false);
            }
        }
        row_base += batch.num_rows() as u64;
    }
    Ok(true)
}

fn cell(array: &StringArray, row: usize) -> &str {
    if array.is_null(row) {
        ""
    } else {
        array.value(row)
    }
}

fn as_strings(batch: &RecordBatch, column: &str) -> Result<StringArray, String> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| format!("column {column:?} not found"))?;
    let cast = arrow_cast::cast(array, &DataType::Utf8)
        .map_err(|error| format!("column {column:?}: {error}"))?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| format!("column {column:?}: not text"))
}

/// A per-row accessor of a Parquet time column, whatever its type.
fn time_values(
    batch: &RecordBatch,
    column: &str,
) -> Result<Box<dyn Fn(usize) -> TimeValue<'static>>, String> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| format!("column {column:?} not found"))?;
    match array.data_type() {
        DataType::Timestamp(_, _) | DataType::Date64 => {
            let millis = arrow_cast::cast(
                array,
                &DataType::Timestamp(ArrowTimeUnit::Millisecond, None),
            )
            .and_then(|ts| arrow_cast::cast(&ts, &DataType::Int64))
            .map_err(|error| format!("column {column:?}: {error}"))?;
            let millis = millis
                .as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .ok_or("not int64")?;
            Ok(Box::new(move |row| {
                if millis.is_null(row) {
                    TimeValue::Missing
                } else {
                    TimeValue::ExactMillis(millis.value(row))
                }
            }))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text = as_strings(batch, column)?;
            Ok(Box::new(move |row| {
                if text.is_null(row) {
                    TimeValue::Missing
                } else {
                    TimeValue::Owned(text.value(row).to_owned())
                }
            }))
        }
        _ => {
            let numbers = arrow_cast::cast(array, &DataType::Float64)
                .map_err(|error| format!("column {column:?}: {error}"))?;
            let numbers = numbers
                .as_any()
                .downcast_ref::<arrow_array::Float64Array>()
                .cloned()
                .ok_or("not numeric")?;
            Ok(Box::new(move |row| {
                if numbers.is_null(row) {
                    TimeValue::Missing
                } else {
                    TimeValue::Number(numbers.value(row))
                }
            }))
        }
    }
}

/// A time as found in the source, before the unit is applied.
enum TimeValue<'a> {
    Text(&'a str),
    Owned(String),
    Number(f64),
    ExactMillis(i64),
    Missing,
}

fn build_event(
    columns: &ColumnMap,
    user: &str,
    item: &str,
    time: &TimeValue<'_>,
    session: Option<&str>,
) -> Result<ClickEvent, String> {
    let rename = |error: FieldError, column: &str| format!("column {column:?}: {}", error.reason);
    validate_id("user_id", user).map_err(|e| rename(e, &columns.user))?;
    validate_id("article_id", item).map_err(|e| rename(e, &columns.item))?;
    let session = session.filter(|s| !s.is_empty());
    if let (Some(session), Some(column)) = (session, columns.session.as_deref()) {
        validate_id("session_id", session).map_err(|e| rename(e, column))?;
    }
    let ts_ms = parse_time(time, columns.unit)
        .map_err(|reason| format!("column {:?}: {reason}", columns.time))?;
    validate_ts_ms(ts_ms).map_err(|e| rename(e, &columns.time))?;
    Ok(ClickEvent {
        event_id: derive_event_id(user, item, ts_ms, EventType::Click, session),
        user_id: user.to_owned(),
        article_id: item.to_owned(),
        ts_ms,
        event_type: EventType::Click,
        session_id: session.map(str::to_owned),
        dwell_ms: None,
        referrer: None,
    })
}

fn parse_time(value: &TimeValue<'_>, unit: TimeUnit) -> Result<i64, String> {
    let text = match value {
        TimeValue::Missing => return Err("is required but missing".into()),
        TimeValue::ExactMillis(ms) => return Ok(*ms),
        TimeValue::Number(number) => {
            return match unit {
                TimeUnit::Millis if number.fract() == 0.0 && number.is_finite() => {
                    Ok(*number as i64)
                }
                TimeUnit::Seconds if number.is_finite() => Ok((number * 1000.0).round() as i64),
                TimeUnit::Rfc3339 => Err(format!("expected RFC 3339 text, got number {number}")),
                _ => Err(format!("expected epoch milliseconds, got {number}")),
            };
        }
        TimeValue::Text(text) => *text,
        TimeValue::Owned(text) => text.as_str(),
    };
    match unit {
        TimeUnit::Millis => text
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("expected epoch milliseconds, got {text:?}")),
        TimeUnit::Seconds => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|seconds| seconds.is_finite())
            .map(|seconds| (seconds * 1000.0).round() as i64)
            .ok_or_else(|| format!("expected epoch seconds, got {text:?}")),
        TimeUnit::Rfc3339 => DateTime::parse_from_rfc3339(text.trim())
            .map(|time| time.timestamp_millis())
            .map_err(|_| format!("expected RFC 3339, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use newsrec_lake::{EventColumns, TimeWindow};
    use proptest::prelude::*;

    fn globo_columns() -> ColumnMap {
        ColumnMap {
            user: "user_id".into(),
            item: "click_article_id".into(),
            time: "click_timestamp".into(),
            unit: TimeUnit::Millis,
            session: Some("session_id".into()),
        }
    }

    fn options(format: ImportFormat, columns: ColumnMap) -> ImportOptions {
        ImportOptions {
            format,
            columns,
            writer: "import-test".into(),
            chunk_events: 2,
        }
    }

    async fn lake_rows(lake: &Lake) -> usize {
        let window = TimeWindow {
            start_ms: 946_684_800_000,
            end_ms: 4_102_444_800_000,
        };
        lake.read_events(window, EventColumns::All)
            .await
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    }

    #[tokio::test]
    async fn gzipped_csv_with_bad_rows_keeps_the_good_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clicks.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        writeln!(gz, "user_id,session_id,click_article_id,click_timestamp").unwrap();
        writeln!(gz, "1,10,100,1506826800000").unwrap();
        writeln!(gz, "2,20,200,yesterday").unwrap();
        writeln!(gz, ",30,300,1506826800000").unwrap();
        writeln!(gz, "4,40,400,1506826900000").unwrap();
        writeln!(gz, "5,50,500,1506827000000").unwrap();
        gz.finish().unwrap();
        let lake = Lake::open("memory://").unwrap();
        let report = import_files(
            &lake,
            vec![path],
            options(ImportFormat::Csv, globo_columns()),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        assert_eq!((report.rows, report.imported, report.rejected), (5, 3, 2));
        assert_eq!(
            report.sample_errors[0],
            "clicks.csv.gz:3: column \"click_timestamp\": expected epoch milliseconds, got \"yesterday\""
        );
        assert_eq!(
            report.sample_errors[1],
            "clicks.csv.gz:4: column \"user_id\": must not be empty"
        );
        assert_eq!(lake_rows(&lake).await, 3);
    }

    #[tokio::test]
    async fn missing_column_names_the_file_and_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        let lake = Lake::open("memory://").unwrap();
        let error = import_files(
            &lake,
            vec![path],
            options(ImportFormat::Csv, globo_columns()),
            Arc::new(|_| {}),
        )
        .await
        .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("column \"user_id\" not found (columns are: a, b)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn ndjson_with_numbers_and_rfc3339() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        std::fs::write(
            &path,
            "{\"u\":1,\"i\":\"a\",\"t\":\"2017-10-01T03:00:00Z\"}\n\n{\"u\":2,\"i\":\"b\"}\n{\"u\":3,\"i\":\"c\",\"t\":\"2017-10-01T04:00:00+02:00\"}\n",
        )
        .unwrap();
        let columns = ColumnMap {
            user: "u".into(),
            item: "i".into(),
            time: "t".into(),
            unit: TimeUnit::Rfc3339,
            session: None,
        };
        let lake = Lake::open("memory://").unwrap();
        let report = import_files(
            &lake,
            vec![path],
            options(ImportFormat::Ndjson, columns),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        assert_eq!((report.imported, report.rejected), (2, 1));
        assert_eq!(
            report.sample_errors[0],
            "x.ndjson:3: column \"t\": is required but missing"
        );
    }

    #[tokio::test]
    async fn parquet_written_by_the_lake_imports_back() {
        let source = Lake::open("memory://").unwrap();
        let events: Vec<ClickEvent> = (0..5)
            .map(|i| ClickEvent::click(&format!("u{i}"), "a", 1_506_826_800_000 + i).unwrap())
            .collect();
        let written = source
            .write_events("w", 1, &[Arc::new(events.clone())])
            .await
            .unwrap();
        let bytes = source.get_object(&written[0].path).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let columns = ColumnMap {
            user: "user_id".into(),
            item: "article_id".into(),
            time: "ts".into(),
            unit: TimeUnit::Millis,
            session: None,
        };
        let lake = Lake::open("memory://").unwrap();
        let report = import_files(
            &lake,
            vec![path],
            options(ImportFormat::Parquet, columns),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        assert_eq!(report.imported, 5);
        assert_eq!(lake_rows(&lake).await, 5);
    }

    proptest! {
        // Fuzz: arbitrary CSV text never panics and every row is either imported or rejected.
        #[test]
        fn arbitrary_csv_never_panics(body in "[0-9a-z,\"\n]{0,300}") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.csv");
            std::fs::write(&path, format!("user_id,session_id,click_article_id,click_timestamp\n{body}")).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let lake = Lake::open("memory://").unwrap();
            let report = runtime
                .block_on(import_files(&lake, vec![path], options(ImportFormat::Csv, globo_columns()), Arc::new(|_| {})))
                .unwrap();
            prop_assert_eq!(report.rows, report.imported + report.rejected);
        }
    }
}
