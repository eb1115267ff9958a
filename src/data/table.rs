//! CSV tables, read with the `csv` crate (quoted fields, a UTF-8 byte-order mark, CRLF line
//! ends) one row at a time, so that a large file streams into the inputs' buffers without being
//! held as text.
//!
//! Rows are numbered by their line in the file (1-based), columns by name and 1-based position.

use super::DataError;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// A numeric table: named columns, row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub file: String,
    pub columns: Vec<String>,
    /// Line number in the file of each row, for error messages.
    pub lines: Vec<usize>,
    pub values: Vec<f64>,
}

impl Table {
    pub fn n_rows(&self) -> usize {
        self.lines.len()
    }

    pub fn load(path: &Path) -> Result<Table, DataError> {
        let file = path.display().to_string();
        let src = std::fs::File::open(path).map_err(|e| DataError::Io {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Table::read(&file, src)
    }

    /// Parses comma-separated text with a header row. Blank lines are skipped.
    pub fn parse(file: &str, text: &str) -> Result<Table, DataError> {
        Table::read(file, text.as_bytes())
    }

    /// Parses CSV bytes (which need not be UTF-8 outside the header and the numbers).
    pub fn read_bytes(file: &str, bytes: &[u8]) -> Result<Table, DataError> {
        Table::read(file, bytes)
    }

    fn read(file: &str, src: impl Read) -> Result<Table, DataError> {
        let mut rows = CsvRows::new(file, src)?;
        let (mut lines, mut values, mut row) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(line) = rows.next_row(&mut row)? {
            lines.push(line);
            values.extend_from_slice(&row);
        }
        Ok(Table {
            file: file.into(),
            columns: rows.columns,
            lines,
            values,
        })
    }
}

/// The rows of a CSV stream, read one at a time after the header.
pub(crate) struct CsvRows<'a, R> {
    file: &'a str,
    reader: csv::Reader<LineEnds<R>>,
    record: csv::ByteRecord,
    /// The header's column names (none repeats).
    pub columns: Vec<String>,
    rows: usize,
}

impl<'a, R: Read> CsvRows<'a, R> {
    /// Reads the header row (blank lines before it are skipped) and checks that no name repeats.
    pub(crate) fn new(file: &'a str, src: R) -> Result<CsvRows<'a, R>, DataError> {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(LineEnds::new(src));
        let mut rows = CsvRows {
            file,
            reader,
            record: csv::ByteRecord::new(),
            columns: Vec::new(),
            rows: 0,
        };
        if !rows.next_record()? {
            return Err(DataError::Empty { file: file.into() });
        }
        let line = rows.line();
        rows.columns = column_names(file, line, &rows.record)?;
        check_unique(file, &rows.columns)?;
        Ok(rows)
    }

    /// The next record that is not blank; false at the end.
    fn next_record(&mut self) -> Result<bool, DataError> {
        loop {
            let more = self
                .reader
                .read_byte_record(&mut self.record)
                .map_err(|e| DataError::Io {
                    file: self.file.into(),
                    message: e.to_string(),
                })?;
            if !more || !is_blank(&self.record) {
                return Ok(more);
            }
        }
    }

    /// The line the current record starts on. The `csv` crate's own line count skips blank
    /// lines and counts CRLF differently, and its byte position is where the previous record's
    /// terminator ended, so the line is counted here from the line ends the reader has passed.
    fn line(&mut self) -> usize {
        let after_previous = self.record.position().map_or(0, |p| p.byte());
        self.reader.get_mut().line_at(after_previous)
    }

    /// Reads the next row into `values` (every cell a finite number) and returns its line
    /// number; `None` at the end. A file without rows is an error.
    pub(crate) fn next_row(&mut self, values: &mut Vec<f64>) -> Result<Option<usize>, DataError> {
        if !self.next_record()? {
            return if self.rows == 0 {
                Err(DataError::NoRows {
                    file: self.file.into(),
                })
            } else {
                Ok(None)
            };
        }
        let line = self.line();
        if self.record.len() != self.columns.len() {
            return Err(DataError::Ragged {
                file: self.file.into(),
                row: line,
                expected: self.columns.len(),
                found: self.record.len(),
            });
        }
        values.clear();
        for (j, cell) in self.record.iter().enumerate() {
            values.push(number(cell).map_err(|problem| DataError::Cell {
                file: self.file.into(),
                row: line,
                column: self.columns[j].clone(),
                position: j + 1,
                problem,
            })?);
        }
        self.rows += 1;
        Ok(Some(line))
    }
}

/// A reader that remembers where the line ends (`\r`, `\n`) it has passed are, until the records
/// before them are done, to number lines as an editor does.
struct LineEnds<R> {
    inner: R,
    offset: u64,
    /// Offsets of `\r` and `\n` bytes not yet behind the current record, and whether each is
    /// a `\n`.
    ends: std::collections::VecDeque<(u64, bool)>,
    /// `\n` bytes already behind the current record.
    lines_before: usize,
}

impl<R> LineEnds<R> {
    fn new(inner: R) -> LineEnds<R> {
        LineEnds {
            inner,
            offset: 0,
            ends: std::collections::VecDeque::new(),
            lines_before: 0,
        }
    }

    /// The 1-based line of a record whose content starts at the first byte at or after `at`
    /// that is not a line end (blank lines and the `\n` of a CRLF come before it).
    fn line_at(&mut self, at: u64) -> usize {
        let mut start = at;
        while let Some(&(offset, newline)) = self.ends.front() {
            if offset > start {
                break;
            }
            if offset == start {
                start += 1;
            }
            self.ends.pop_front();
            // A `\r` ends a line unless a `\n` follows it (CRLF); the byte after it has been read,
            // since the record being numbered starts after it.
            let crlf = !newline && self.ends.front() == Some(&(offset + 1, true));
            self.lines_before += usize::from(newline || !crlf);
        }
        self.lines_before + 1
    }
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for i in memchr::memchr2_iter(b'\n', b'\r', &buf[..n]) {
            self.ends
                .push_back((self.offset + i as u64, buf[i] == b'\n'));
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// A line of nothing but spaces reads as one empty field.
fn is_blank(record: &csv::ByteRecord) -> bool {
    record.len() == 1 && record[0].is_empty()
}

fn column_names(
    file: &str,
    line: usize,
    record: &csv::ByteRecord,
) -> Result<Vec<String>, DataError> {
    record
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let name = String::from_utf8(name.to_vec()).map_err(|_| DataError::Cell {
                file: file.into(),
                row: line,
                column: String::from_utf8_lossy(name).into_owned(),
                position: j + 1,
                problem: "the column name is not UTF-8 text".into(),
            })?;
            // The byte-order mark some spreadsheet programs write is not part of the name.
            Ok(name.strip_prefix('\u{feff}').unwrap_or(&name).to_string())
        })
        .collect()
}

/// Checks in one pass that no column name repeats.
fn check_unique(file: &str, columns: &[String]) -> Result<(), DataError> {
    let mut seen = std::collections::HashSet::with_capacity(columns.len());
    match columns.iter().find(|c| !seen.insert(c.as_str())) {
        Some(c) => Err(DataError::DuplicateColumn {
            file: file.into(),
            column: c.clone(),
        }),
        None => Ok(()),
    }
}

fn number(cell: &[u8]) -> Result<f64, String> {
    let text = std::str::from_utf8(cell).map_err(|_| "the cell is not UTF-8 text".to_string())?;
    if text.is_empty() {
        return Err("empty cell".into());
    }
    let v: f64 = text
        .parse()
        .map_err(|_| format!("`{}` is not a number", shorten(text)))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("`{}` is not a finite number", shorten(text)))
    }
}

/// A cell as quoted in a message: at most 40 characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Where each column is, by name.
pub(crate) struct ColumnIndex<'a> {
    file: &'a str,
    columns: &'a [String],
    by_name: HashMap<&'a str, usize>,
}

impl<'a> ColumnIndex<'a> {
    pub(crate) fn new(file: &'a str, columns: &'a [String]) -> ColumnIndex<'a> {
        let by_name = columns
            .iter()
            .enumerate()
            .map(|(j, c)| (c.as_str(), j))
            .collect();
        ColumnIndex {
            file,
            columns,
            by_name,
        }
    }

    pub(crate) fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn require(&self, name: &str, input: &str) -> Result<usize, DataError> {
        self.find(name).ok_or_else(|| DataError::MissingColumn {
            file: self.file.into(),
            column: name.into(),
            input: input.into(),
            available: abbreviate(self.columns),
        })
    }
}

fn abbreviate(cols: &[String]) -> String {
    if cols.len() <= 12 {
        cols.join(", ")
    } else {
        format!(
            "{}, …, {} ({} columns)",
            cols[..6].join(", "),
            cols[cols.len() - 3..].join(", "),
            cols.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Table, DataError> {
        Table::parse("t.csv", text)
    }

    #[test]
    fn quotes_a_byte_order_mark_and_crlf_are_read() {
        let t = parse("\u{feff}\"a\",\"b, c\"\r\n1,\"2\"\r\n\r\n  \r\n3 , 4\r\n").unwrap();
        assert_eq!(t.columns, ["a", "b, c"]);
        assert_eq!(t.values, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t.lines, [2, 5]);
        let t = parse("\n\na,b\n\"1\n\",2\r\n\r\n\n3,4").unwrap();
        assert_eq!((t.lines, t.values), (vec![4, 8], vec![1.0, 2.0, 3.0, 4.0]));
        // Lines that end in a lone CR (classic Mac OS), as the `csv` crate reads them; a CR in
        // a quoted field is a line end inside the field (found by fuzzing: two rows had the
        // same line number).
        let t = parse("a\r1\r\r2\r\n3").unwrap();
        assert_eq!((t.lines, t.values), (vec![2, 4, 5], vec![1.0, 2.0, 3.0]));
        let t = parse("\"a\r\r\"\n5\r6\n").unwrap();
        assert_eq!((t.lines, t.values), (vec![4, 5], vec![5.0, 6.0]));
    }

    #[test]
    fn errors_name_the_line_and_the_column() {
        let cases = [
            (
                "",
                "t.csv: the file is empty; expected a header row naming the columns",
            ),
            ("a,b\n", "t.csv: has a header but no rows of data"),
            ("a,b,a\n1,2,3\n", "t.csv: the header names column `a` twice"),
            (
                "a,b\n1,2\n\n3\n",
                "t.csv:4: expected 2 fields as in the header, found 1",
            ),
            (
                "a,b\n1,x\n",
                "t.csv:2: column `b` (column 2): `x` is not a number",
            ),
            ("a,b\n1,\n", "t.csv:2: column `b` (column 2): empty cell"),
            (
                "a,b\n1,inf\n",
                "t.csv:2: column `b` (column 2): `inf` is not a finite number",
            ),
            (
                "a,b\n\"1\n\",2\n3,\"x\"\n",
                "t.csv:4: column `b` (column 2): `x` is not a number",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err().to_string(), want, "{text:?}");
        }
        let long = format!("a\n{}\n", "9".repeat(100) + "x");
        let e = parse(&long).unwrap_err().to_string();
        assert!(e.ends_with("99…` is not a number"), "{e}");
        let e = Table::read("t.csv", &b"a\n\xff\n"[..])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "t.csv:2: column `a` (column 1): the cell is not UTF-8 text"
        );
    }

    #[test]
    fn the_duplicate_check_finds_a_repeat_among_300000_columns() {
        // A quadratic check took over 30 s at this width; the check is one pass over a hash
        // set, and the column index one hash map, so this runs in milliseconds. Speed is the
        // benchmarks' business: this test checks the answers at that width.
        let n = 300_000;
        let mut header: Vec<String> = (0..n).map(|j| format!("c{j}")).collect();
        assert!(check_unique("t.csv", &header).is_ok());
        let index = ColumnIndex::new("t.csv", &header);
        assert_eq!(index.find("c299999"), Some(n - 1));
        header.push("c150000".into());
        match check_unique("t.csv", &header) {
            Err(DataError::DuplicateColumn { column, .. }) => assert_eq!(column, "c150000"),
            other => panic!("expected the repeated column, found {other:?}"),
        }
    }
}
