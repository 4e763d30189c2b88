"""Collection: stream the records out of whatever file or folder a team hands us.

`iter_rows(path)` reads JSONL, JSON (an array, `{"data": [...]}`, the SQuAD layout), CSV/TSV, Parquet, Arrow, a
folder saved by `datasets`, a Hugging Face Hub dataset folder (sharded data files under data/ or train.jsonl /
test.jsonl, with a README.md card; the split each row came from is taken from the file names) and folders of
.txt/.md documents, and yields one RawRow per record with the file
and line (or item index) it came from. A record that cannot be parsed becomes a RawRow carrying the error, so
one bad line never stops a load; only whole-input problems (missing path, empty, binary or unsupported file)
raise DataError. Encodings are sniffed, not assumed: files exported from Excel or old systems are often
Latin-1/cp1252, or a mix of that and UTF-8.

Hostile or broken inputs are bounded (README "Limits"): a line or record longer than MAX_LINE_CHARS or nested
deeper than MAX_DEPTH becomes an error row; a header wider than MAX_COLUMNS, more than DECODED_BUDGET of decoded
data in one load (compressed Parquet expands), or an input that is not a regular file raises DataError. Symlinks
inside folders are not followed unless asked.

Lazy imports: charset_normalizer, pyarrow are imported inside the functions that use them, so importing this module
(from the CLI, the chat or a run process) stays cheap.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import stat
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from executor.data.records import RawRow, SourceRef

SAMPLE_BYTES = 8192
# Limits of one load. A line (JSONL, CSV) or JSON array item may hold up to this many characters: 4 Mi characters
# is more text than any catalog model's context takes (it would be rejected as too_long after tokenizing, at a
# far higher memory cost), and reading stops there, so a longer line is never held whole.
MAX_LINE_CHARS = 4 << 20
MAX_DEPTH = 100          # nesting levels of one record; real records have a handful, parsers recurse per level
MAX_COLUMNS = 1000       # CSV/TSV header columns
# Characters of decoded text (or bytes of decompressed Arrow data) one load may produce: the upload limit counts
# compressed bytes, and a few KB of Parquet can decode to gigabytes.
DECODED_BUDGET = 1 << 30
LISTED_NAMES = 10        # names quoted in one error message; the rest are counted
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
DOCUMENT_SUFFIXES = (".txt", ".md", ".markdown")
SUPPORTED = (*JSONL_SUFFIXES, ".json", *CSV_DELIMITERS, ".parquet", ".arrow", *DOCUMENT_SUFFIXES)
DATA_SUFFIXES = (*JSONL_SUFFIXES, ".json", *CSV_DELIMITERS, ".parquet", ".arrow")
COMPRESSED_SUFFIXES = (".gz", ".zip", ".bz2", ".xz", ".zst", ".tar")
# Top-level keys under which a JSON object commonly holds its list of records.
RECORD_KEYS = ("data", "rows", "examples", "records")
DATASET_MARKERS = ("dataset_info.json", "state.json")
# Split names as the Hugging Face Hub reads them from file and folder names (train-00000-of-00002.parquet,
# test.jsonl, data/validation/...): the words it recognises, and the split each one means.
SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test", "eval": "test",
               "evaluation": "test"}
SPLIT_ORDER = ("train", "validation", "test")
DATASET_CARDS = ("readme.md",)   # a Hub dataset's card: describes the data, is not data
HUB_METADATA = ("dataset_infos.json",)  # older Hub repositories describe their features in this file
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")

_BOMS = (  # longest first: the UTF-32-LE BOM starts with the UTF-16-LE one
    (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"),
)
# Control bytes that do not occur in text (tab, newlines, form feed, backspace and escape do).
_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\x0b\x0c\x08\x1b")
_WHITESPACE = re.compile(r"\s*")
_UTF8_MULTIBYTE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
# Encodings read as "UTF-8 with a cp1252 fallback" (see _decode_invalid_as_cp1252).
_LATIN_FAMILY = {"utf-8", "utf_8", "ascii", "cp1252", "latin-1", "latin_1", "iso-8859-1", "windows-1252"}


class DataError(ValueError):
    """The input as a whole cannot be read (missing, empty, binary, unsupported); the message says what to do."""


@dataclass
class LoadStats:
    """What a load read besides its rows: blank lines skipped, and the decoded size (bounded by DECODED_BUDGET).

    Pass one to `iter_rows` to read the counts once the rows are consumed; a folder's files share it."""

    blank_lines: int = 0
    decoded: int = 0
    budget: int = field(default_factory=lambda: DECODED_BUDGET)

    def charge(self, where: str | Path, amount: int) -> None:
        self.decoded += amount
        if self.decoded > self.budget:
            raise DataError(f"{where}: more than {_size(self.budget)} of decoded data in one load (the limit); "
                            "split the data into smaller files and prepare them one at a time")

    def remaining(self) -> int:
        return max(0, self.budget - self.decoded)


def _size(count: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.3g} {unit}"
    return f"{count} B"


def _listed(names: Iterable[str], show: Any = repr, sep: str = ", ") -> str:
    """A few names (quoted by `show`), each cut short, the rest counted: error messages stay short for any input."""
    names = list(names)
    shown = sep.join(show(n if len(n) <= 40 else n[:40] + "…") for n in names[:LISTED_NAMES])
    return shown + (f"{sep}and {len(names) - LISTED_NAMES:,} more" if len(names) > LISTED_NAMES else "")


# ---------------------------------------------------------------------------------------------- encodings

def _decode_invalid_as_cp1252(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 are read as cp1252 (Latin-1 where cp1252 has a gap).

    Files that were edited by several tools are often mostly UTF-8 with some Latin-1 lines; decoding them as
    either encoding alone garbles the other half, this decodes both ("café" comes out right either way).
    """
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = err.object[err.start:err.end]
    return "".join(_cp1252_char(b) for b in bad), err.end


def _cp1252_char(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D are unassigned in cp1252
        return chr(byte)


codecs.register_error("tunewise-cp1252-fallback", _decode_invalid_as_cp1252)


def detect_encoding(sample: bytes) -> str:
    """Name the encoding of a file from its first bytes: BOM, then strict UTF-8, then charset_normalizer.

    Returns 'utf-8' also for samples that mix UTF-8 with Latin-1 bytes (the reader decodes those bytes as
    cp1252), and 'cp1252' for single-byte Western text.
    """
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    utf16 = _bomless_utf16(sample)
    if utf16:
        return utf16
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)  # a cut-off last character is fine
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # UTF-8 mixed with Latin-1: valid UTF-8 sequences (which pure cp1252 text rarely forms) plus stray
    # accented bytes between ASCII letters.
    if _UTF8_MULTIBYTE.search(sample) and not _high_bytes_in_runs(_UTF8_MULTIBYTE.sub(b"a", sample)):
        return "utf-8"
    return _guess_single_byte(sample)


def _bomless_utf16(sample: bytes) -> str | None:
    """UTF-16 without a BOM shows as NUL in every other byte (for mostly-ASCII text)."""
    pairs = len(sample) // 2
    if pairs < 8:
        return None
    even_nul = sample[0:pairs * 2:2].count(0) / pairs
    odd_nul = sample[1:pairs * 2:2].count(0) / pairs
    if odd_nul > 0.4 and even_nul < 0.05:
        return "utf-16-le"
    if even_nul > 0.4 and odd_nul < 0.05:
        return "utf-16-be"
    return None


def _guess_single_byte(sample: bytes) -> str:
    """charset_normalizer for non-Latin scripts; cp1252 for Western text.

    On short Western samples charset_normalizer often answers cp1250 ("crème" -> "crčme"); the single-byte
    Latin code pages cannot be told apart reliably, and cp1252 is what Excel and Windows tools write.
    """
    if not _high_bytes_in_runs(sample):
        return "cp1252"
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None or not _mostly_non_latin(str(best)):
        return "cp1252"
    return best.encoding


def _high_bytes_in_runs(sample: bytes) -> bool:
    """Whole words of non-ASCII bytes: another script (Cyrillic, Greek, CJK); Western text has accents
    between ASCII letters ("café", "Grüße")."""
    high = [i for i, b in enumerate(sample) if b > 127]
    in_runs = sum(1 for i in high if (i > 0 and sample[i - 1] > 127) or (i + 1 < len(sample) and sample[i + 1] > 127))
    return in_runs > len(high) / 2


def _mostly_non_latin(text: str) -> bool:
    letters = [c for c in text if ord(c) > 127 and c.isalpha()]
    non_latin = sum(1 for c in letters if not unicodedata.name(c, "").startswith("LATIN"))
    return bool(letters) and non_latin > len(letters) / 2


def _codec(encoding: str) -> tuple[str, str]:
    """(codec, error handler) to read a file whose sniffed encoding is `encoding`."""
    if encoding.lower() in _LATIN_FAMILY:
        return "utf-8", "tunewise-cp1252-fallback"
    if encoding == "utf-8-sig":
        return "utf-8-sig", "tunewise-cp1252-fallback"
    return encoding, "replace"


# ---------------------------------------------------------------------------------------------- whole-input checks

_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _check_input(path: Path) -> None:
    """A folder or a regular file: opening a FIFO blocks until someone writes, a device never ends."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file or folder; check the path (relative paths start at {Path.cwd()})") \
            from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
    raise DataError(f"{path}: not a regular file ({kind}); give a data file or a folder")


def _read_head(path: Path) -> bytes:
    """The first bytes of a text file, after the checks every file gets: not empty, not binary."""
    head = _read_start(path, SAMPLE_BYTES)
    why = _binary_reason(head)
    if why:
        raise DataError(f"{path} looks like a binary file ({why}), not {path.suffix or 'text'} text: "
                        "if it is compressed, decompress it first; if it is Parquet, name it .parquet")
    return head


def _read_start(path: Path, size: int) -> bytes:
    with path.open("rb") as f:
        head = f.read(size)
    if not head:
        raise DataError(f"{path} is empty (0 bytes): export the data again, or point at the right file")
    return head


def _binary_reason(head: bytes) -> str | None:
    if any(head.startswith(bom) for bom, _ in _BOMS) or _bomless_utf16(head):
        return None
    if b"\x00" in head:
        return "NUL bytes in the first 8 KB"
    controls = sum(head.count(bytes([c])) for c in _CONTROL)
    if controls > len(head) * 0.1:
        return f"{controls} control characters in the first {len(head)} bytes"
    return None


def _open_text(path: Path, head: bytes, newline: str | None = "") -> TextIO:
    codec, errors = _codec(detect_encoding(head))
    return io.TextIOWrapper(path.open("rb"), encoding=codec, errors=errors, newline=newline)


# ---------------------------------------------------------------------------------------------- entry points

def iter_rows(path: str | Path, *, follow_symlinks: bool = False, stats: LoadStats | None = None) -> Iterator[RawRow]:
    """Yield one RawRow per record of a file or folder, streaming (big JSONL/CSV/Parquet are never read whole).

    follow_symlinks: read files and folders that symlinks inside a folder point to (off: a folder shared with
    the service must not expose files elsewhere). stats: counts blank lines and the decoded size as rows stream."""
    path = Path(path)
    _check_input(path)
    return _iter_path(path, LoadStats() if stats is None else stats, follow_symlinks)


def _iter_path(path: Path, stats: LoadStats, follow_symlinks: bool) -> Iterator[RawRow]:
    if path.is_dir():
        return _iter_folder(path, stats, follow_symlinks)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DataError(_unsupported_message(path))
    if suffix == ".parquet":
        if _read_start(path, 4) != b"PAR1":
            raise DataError(f"{path} is not a Parquet file (no PAR1 magic bytes); check how it was exported")
        return _iter_parquet(path, stats)
    if suffix == ".arrow":
        return _iter_arrow_file(path, stats)
    head = _read_head(path)
    if suffix in JSONL_SUFFIXES:
        return _iter_jsonl(path, head, stats)
    if suffix == ".json":
        return _iter_json(path, head, stats)
    if suffix in CSV_DELIMITERS:
        return _iter_csv(path, head, CSV_DELIMITERS[suffix], stats)
    return iter([_document_row(path, path.name, stats)])


def estimate_rows(path: str | Path, *, follow_symlinks: bool = False) -> int | None:
    """A cheap row count for progress bars (newlines for JSONL/CSV, metadata for Parquet); None if unknown."""
    path = Path(path)
    try:
        _check_input(path)
        if path.is_dir():
            return _estimate_folder(path, follow_symlinks)
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            return _count_lines(path)
        if suffix in CSV_DELIMITERS:
            return _estimate_csv(path)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        if suffix == ".arrow":
            return sum(batch.num_rows for batch in _arrow_batches(path))
        if suffix in DOCUMENT_SUFFIXES:
            return 1
    except (OSError, ValueError, csv.Error):
        return None
    return None


def _unsupported_message(path: Path) -> str:
    hint = ""
    if path.suffix.lower() in COMPRESSED_SUFFIXES:
        hint = "; it looks compressed: decompress it first"
    return (f"{path}: unsupported file type '{path.suffix or '(none)'}'{hint}. Supported: {', '.join(SUPPORTED)}, "
            "a folder saved by datasets.save_to_disk, a Hugging Face Hub dataset folder (data files with a "
            "README.md card), or a folder of .txt/.md documents")


def _estimate_csv(path: Path, probe: int = 20_000) -> int:
    """Records in a CSV: counted exactly when the first `probe` records are all, else scaled from them.

    Counting newlines alone overcounts badly when quoted fields hold newlines (3 lines per record is common).
    """
    lines = _count_lines(path)
    count, last_line = 0, 1
    for count, row in enumerate(iter_rows(path), start=1):
        last_line = row.source.line or last_line
        if count == probe:
            return round(count * lines / last_line)
    return count


def _count_lines(path: Path, exact_up_to: int = 64 << 20, sample: int = 16 << 20) -> int:
    """Newline count; past `exact_up_to` bytes, extrapolated from the first `sample` bytes (it is only a hint)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb") as f:
        if size > exact_up_to:
            return round(f.read(sample).count(b"\n") * size / sample)
        count, last = 0, b""
        for chunk in iter(lambda: f.read(1 << 20), b""):
            count += chunk.count(b"\n")
            last = chunk
    return count + (0 if last.endswith(b"\n") else 1)


# ---------------------------------------------------------------------------------------------- JSON Lines

class _LongLine:
    """Stands for a line longer than MAX_LINE_CHARS: its start was read up to the limit, the rest skipped."""


def _bounded_lines(text: TextIO, where: str, stats: LoadStats) -> Iterator[str | _LongLine]:
    """The lines of `text`, each read at most MAX_LINE_CHARS (+1 to tell) at a time, charged to the budget."""
    limit = MAX_LINE_CHARS
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        stats.charge(where, len(line))
        if len(line) <= limit:
            yield line
            continue
        if not line.endswith(("\n", "\r")):
            _skip_rest_of_line(text, where, stats)
        yield _LongLine()


def _skip_rest_of_line(text: TextIO, where: str, stats: LoadStats) -> None:
    while True:
        piece = text.readline(1 << 16)
        stats.charge(where, len(piece))
        if not piece or piece.endswith(("\n", "\r")):
            return


def _charged_chunks(f: Any, where: str | Path, stats: LoadStats, size: int = 1 << 20) -> Iterator[Any]:
    """A whole file in chunks, each charged to the budget before the next is read (read(n) would allocate n)."""
    for chunk in iter(lambda: f.read(size), f.read(0)):
        stats.charge(where, len(chunk))
        yield chunk


def _too_long(source: SourceRef, what: str = "line") -> str:
    return f"{source}: {what} longer than {MAX_LINE_CHARS:,} characters; not read (split the record or shorten it)"


def _too_deep(source: SourceRef | str) -> str:
    return f"{source}: nested more than {MAX_DEPTH} levels deep; flatten the record"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests more than `limit` containers deep, counting the value itself (without recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _iter_jsonl(path: Path, head: bytes, stats: LoadStats) -> Iterator[RawRow]:
    file = str(path)
    with _open_text(path, head) as text:
        for number, line in enumerate(_bounded_lines(text, file, stats), start=1):
            if isinstance(line, _LongLine):
                yield RawRow(SourceRef(file, line=number), None, _too_long(SourceRef(file, line=number)))
                continue
            line = line.lstrip("\ufeff")  # concatenated files can carry a BOM mid-file
            if line.strip():
                yield _json_line_row(file, number, line)
            else:
                stats.blank_lines += 1


def _json_line_row(file: str, number: int, line: str) -> RawRow:
    source = SourceRef(file, line=number)
    line = line.rstrip("\r\n")  # a cut line's newline would read as a control character inside a string
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        return RawRow(source, None, _json_error(e, line))
    except RecursionError:  # deeper than the parser goes: certainly deeper than MAX_DEPTH
        return RawRow(source, None, _too_deep(source))
    except ValueError:  # not a syntax error: Python refuses integers this long (a guard against slow parsing)
        return RawRow(source, None, _huge_number(source))
    return _object_row(source, value)


def _huge_number(source: SourceRef | Path) -> str:
    return f"{source}: a number with more than {sys.get_int_max_str_digits():,} digits; write it as a string"


def _json_error(e: json.JSONDecodeError, text: str, line: int | None = None, column_base: int = 0) -> str:
    """The decoder's message placed in the file (`text` starts on `line`, `column_base` characters into it)."""
    newline = text.rfind("\n", 0, e.pos)
    where = f"column {e.pos - newline if newline >= 0 else column_base + e.pos + 1}"
    if line is not None:
        where = f"line {line + text.count(chr(10), 0, e.pos)}, {where}"
    message = f"invalid JSON: {e.msg}{'' if e.msg.endswith(' at') else ' at'} {where}"
    if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string"):
        message += " (the record ends early: is it truncated?)"
    return message


def _unreadable_item(source: SourceRef, e: Exception) -> str:
    if isinstance(e, _ItemTooLong):
        return _too_long(source, "record")
    return _too_deep(source) if isinstance(e, RecursionError) else _huge_number(source)


def _object_row(source: SourceRef, value: Any) -> RawRow:
    if isinstance(value, dict):
        if _deeper_than(value, MAX_DEPTH):  # later steps (schema detection, json.dumps of rejects) recurse too
            return RawRow(source, None, _too_deep(source))
        return RawRow(source, value)
    return RawRow(source, None, f"expected a JSON object, got {_json_type(value)}")


def _json_type(value: Any) -> str:
    names = {list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------- JSON

def _iter_json(path: Path, head: bytes, stats: LoadStats) -> Iterator[RawRow]:
    with _open_text(path, head) as text:
        first = _first_char(text)
        if first == "[":
            yield from _iter_json_array(str(path), text, stats)
            return
    if first == "{" and _looks_like_jsonl(path, head):
        yield from _iter_jsonl(path, head, stats)
        return
    yield from _iter_json_document(path, head, stats)


def _first_char(text: TextIO) -> str:
    while True:
        char = text.read(1)
        if not char or not (char.isspace() or char == "\ufeff"):
            return char


def _looks_like_jsonl(path: Path, head: bytes) -> bool:
    """A .json file holding one object per line: its first line parses alone and another line follows."""
    with _open_text(path, head) as text:
        lines = (line for line in iter(lambda: text.readline(MAX_LINE_CHARS + 1), "") if line.strip())
        first = next(lines, "")
        if len(first) > MAX_LINE_CHARS:  # one long line: a document (as JSONL it would only be rejected)
            return False
        try:
            json.loads(first)
        except json.JSONDecodeError:
            return False
        except (RecursionError, ValueError):  # too deep or a too long number: still one value on the line
            pass
        return next(lines, "").lstrip().startswith("{")


def _iter_json_document(path: Path, head: bytes, stats: LoadStats) -> Iterator[RawRow]:
    """A file holding one JSON value: read whole (its records are only known once it is parsed)."""
    with _open_text(path, head, newline=None) as text:
        document = "".join(_charged_chunks(text, path, stats))
    try:
        value = json.loads(document)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}. If the file "
                        "holds one object per line, name it .jsonl so each line is read on its own") from e
    except RecursionError:
        raise DataError(f"{path}: JSON nested more than {MAX_DEPTH} levels deep (deeper than the parser reads); "
                        "flatten the records") from None
    except ValueError:
        raise DataError(_huge_number(path)) from None
    del document
    if not isinstance(value, dict):  # arrays were streamed before getting here
        raise DataError(f"{path}: expected JSON records (an array of objects), got a single {_json_type(value)}")
    yield from _object_records(str(path), value)


def _object_records(file: str, value: dict) -> Iterator[RawRow]:
    key = next((k for k in RECORD_KEYS if isinstance(value.get(k), list)), None)
    if key is None:
        lists = [k for k, v in value.items() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if lists:
            raise DataError(f"{file}: a JSON object whose records are under [{_listed(lists)}]; expected them under "
                            f"one of {list(RECORD_KEYS)}, or a JSON array / one object per line (.jsonl)")
        yield _object_row(SourceRef(file, item=0), value)  # a single record
        return
    records = value[key]
    if records and isinstance(records[0], dict) and "paragraphs" in records[0]:
        yield from _squad_rows(file, records)
        return
    for index, item in enumerate(records):
        yield _object_row(SourceRef(file, item=index), item)


def _squad_rows(file: str, articles: list) -> Iterator[RawRow]:
    """SQuAD layout -> one row per question: context, question, answer (the first answer's text), title, id.

    Other scalar keys of the paragraph and the question (document_id, is_impossible) are kept too: splits
    should keep all questions about one document together.
    """
    index = 0
    for article in articles:
        for paragraph in _objects_under(article, "paragraphs"):
            for qa in paragraph.get("qas") if isinstance(paragraph.get("qas"), list) else []:
                source = SourceRef(file, item=index)
                index += 1
                if isinstance(qa, dict):
                    yield _object_row(source, _squad_row(article, paragraph, qa))
                else:
                    yield RawRow(source, None, f"expected a SQuAD question object, got {_json_type(qa)}")


def _objects_under(obj: Any, key: str) -> list[dict]:
    value = obj.get(key) if isinstance(obj, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _squad_row(article: dict, paragraph: dict, qa: dict) -> dict[str, Any]:
    answers = qa.get("answers") if isinstance(qa.get("answers"), list) else []
    row = {
        "context": paragraph.get("context"),
        "question": qa.get("question"),
        "answer": answers[0].get("text") if answers and isinstance(answers[0], dict) else None,
        "title": article.get("title"),
        "id": qa.get("id"),
    }
    for extra in (paragraph, qa):
        row.update({k: v for k, v in extra.items() if k not in row and not isinstance(v, (list, dict))})
    return row


def _iter_json_array(file: str, text: TextIO, stats: LoadStats) -> Iterator[RawRow]:
    """Stream the items of a top-level JSON array, noting the line each item starts on.

    An item that does not parse ends the array with one error row: past a syntax error the item boundaries
    are unknown, so guessing further rows could invent records. An item too deep or too long to decode is
    rejected and skipped by counting brackets outside strings, so the items after it are still read.
    """
    text.seek(0)  # back before the '[' that _first_char read, so the newlines before it are counted
    reader = _ArrayReader(text, file, stats)
    reader.skip_whitespace()
    reader.pos += 1  # the '['
    index = 0
    while True:
        if not reader.skip_whitespace():
            yield reader.error_row(file, index, "invalid JSON: the array is not closed (is the file truncated?)")
            return
        char = reader.buf[reader.pos]
        if char == "]":  # also right after a trailing comma: lenient, nothing is lost
            return
        if index and char != ",":
            yield reader.error_row(file, index, f"invalid JSON: expected ',' or ']' after item {index - 1}, "
                                                f"found {char!r}")
            return
        if index:
            reader.pos += 1
            if not reader.skip_whitespace() or reader.buf[reader.pos] == "]":
                continue
        source = SourceRef(file, line=reader.line, item=index)
        index += 1
        try:
            value = reader.decode()
        except json.JSONDecodeError as e:
            yield reader.error_row(file, index - 1, reader.describe(e))
            return
        except (RecursionError, _ItemTooLong, ValueError) as e:  # the item is unreadable, its end can be found
            yield RawRow(source, None, _unreadable_item(source, e))
            reader.skip_value()
            continue
        yield _object_row(source, value)


class _ItemTooLong(Exception):
    """A JSON array item that does not fit in MAX_LINE_CHARS."""


# What moves bracket counting on: runs of openers or closers, quotes, and commas (which end a scalar item).
_JSON_STRUCTURE = re.compile(r'[\[{]+|[\]}]+|"|,')
_STRING_STOP = re.compile(r'["\\]')


class _ArrayReader:
    """A growing window over a text stream, decoding one JSON value at a time and counting lines."""

    def __init__(self, text: TextIO, file: str, stats: LoadStats, chunk: int = 1 << 16):
        self.text, self.size, self.chunk = text, chunk, chunk
        self.file, self.stats = file, stats
        self.buf, self.pos, self.eof = "", 0, False
        self.line = 1          # line of buf[pos]
        self.column_base = 0   # characters of buf[0]'s line that were dropped from the window

    def more(self) -> None:
        dropped = self.buf[:self.pos]
        newline = dropped.rfind("\n")
        self.column_base = len(dropped) - newline - 1 if newline >= 0 else self.column_base + len(dropped)
        data = self.text.read(self.size)
        self.stats.charge(self.file, len(data))
        self.eof = not data
        self.buf, self.pos = self.buf[self.pos:] + data, 0

    def skip_whitespace(self) -> bool:
        """Move to the next non-space character; False at the end of the file."""
        while True:
            end = _WHITESPACE.match(self.buf, self.pos).end()
            self.line += self.buf.count("\n", self.pos, end)
            self.pos = end
            if self.pos < len(self.buf) or self.eof:
                return self.pos < len(self.buf)
            self.more()

    def decode(self) -> Any:
        """The value at pos; reads more of the file while the value may be cut off by the window's end."""
        decoder = json.JSONDecoder()
        while True:
            try:
                value, end = decoder.raw_decode(self.buf, self.pos)
                if end - self.pos > MAX_LINE_CHARS:  # the same limit whether the window had to grow or not
                    raise _ItemTooLong
                if end < len(self.buf) or self.eof:  # a number cut at the window's end would parse short
                    self.line += self.buf.count("\n", self.pos, end)
                    self.pos = end
                    return value
            except json.JSONDecodeError:
                if self.eof:
                    raise
            if len(self.buf) - self.pos > MAX_LINE_CHARS:
                raise _ItemTooLong
            self.size *= 2  # grow, so one huge item costs O(n log n), not O(n^2)
            self.more()

    def skip_value(self) -> None:
        """Move past the value at pos without decoding it: brackets are counted outside strings, a scalar ends at
        a comma or the array's closing bracket. Reads the file in plain chunks, so nothing grows with the value."""
        self.size = self.chunk
        depth = 0
        while True:
            match = _JSON_STRUCTURE.search(self.buf, self.pos)
            if match is None:
                if not self._advance(len(self.buf)):
                    return
                continue
            token, start, end = match.group(), match.start(), match.end()  # before _advance moves the window
            if depth == 0 and (token == "," or token[0] in "]}"):
                self._advance(start)  # the item ends before it: the array loop reads it
                return
            if token[0] in "]}":
                if len(token) >= depth:
                    self._advance(start + depth)
                    return
                depth -= len(token)
            elif token[0] in "[{":
                depth += len(token)
            self._advance(end)
            if token == '"' and (not self._skip_string() or depth == 0):
                return

    def _skip_string(self) -> bool:
        """Move past the rest of a string whose opening quote was read; False at the end of the file."""
        while True:
            match = _STRING_STOP.search(self.buf, self.pos)
            if match is None:
                if not self._advance(len(self.buf)):
                    return False
                continue
            if match.group() == "\\" and match.end() == len(self.buf):  # the escaped character is not read yet
                self._advance(match.start())
                if self.eof:
                    return False
                self.more()
                continue
            if match.group() == '"':
                self._advance(match.end())
                return True
            self._advance(match.end() + 1)  # an escape: skip the escaped character

    def _advance(self, pos: int) -> bool:
        """Move to `pos`, counting lines; at the window's end read more. False when the file has ended."""
        self.line += self.buf.count("\n", self.pos, pos)
        self.pos = pos
        if pos < len(self.buf):
            return True
        if self.eof:
            return False
        self.more()
        return self.pos < len(self.buf)

    def describe(self, e: json.JSONDecodeError) -> str:
        return _json_error(e, self.buf, self.line - self.buf.count("\n", 0, self.pos), self.column_base)

    def error_row(self, file: str, index: int, error: str) -> RawRow:
        return RawRow(SourceRef(file, line=self.line, item=index), None, error)


# ---------------------------------------------------------------------------------------------- CSV / TSV

def _iter_csv(path: Path, head: bytes, delimiter: str, stats: LoadStats) -> Iterator[RawRow]:
    # Documents in a cell easily pass csv's default 128 KB field limit; the limit is process-wide. Lines are
    # bounded by MAX_LINE_CHARS before the csv reader sees them.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    file = str(path)
    with _open_text(path, head) as text:
        lines = _bounded_lines(text, file, stats)
        first, skipped = next(lines, ""), 0
        while isinstance(first, str) and first and not first.strip():  # the csv reader never sees these, but
            first, skipped = next(lines, ""), skipped + 1                 # line numbers count them
        stats.blank_lines += skipped
        if isinstance(first, _LongLine):
            raise DataError(f"{path}: the header line is longer than {MAX_LINE_CHARS:,} characters; keep the "
                            "columns you train on")
        if not first:
            raise DataError(f"{path}: no header row; a CSV/TSV file needs column names on its first line")
        if delimiter == "," and "," not in first and any(d in first for d in ";\t|"):
            delimiter = _sniff_delimiter(first)  # e.g. European Excel: ';'
        long_lines: set[int] = set()
        reader = csv.reader(_csv_lines(first, lines, long_lines), delimiter=delimiter)
        try:
            names = next(reader)
        except csv.Error as e:
            raise DataError(f"{path}: cannot read the header row ({e})") from None
        columns = _header(path, names)
        yield from _csv_records(file, reader, columns, long_lines, skipped, stats)


def _csv_records(file: str, reader: Any, columns: list[str], long_lines: set[int], skipped: int,
                 stats: LoadStats) -> Iterator[RawRow]:
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield RawRow(SourceRef(file, line=start + skipped), None, f"invalid CSV: {e}")
            continue
        long = min((n for n in long_lines if start <= n <= reader.line_num), default=None)
        if long is not None:  # the record held a line that was not read: rejected whole
            source = SourceRef(file, line=start + skipped)
            yield RawRow(source, None, _too_long(source, f"line {long + skipped}"))
        elif not values or (len(values) == 1 and not values[0].strip() and len(columns) > 1):
            stats.blank_lines += 1
        else:
            yield _csv_row(file, columns, values, start + skipped, reader.line_num + skipped)


def _csv_lines(first: str, lines: Iterator[str | _LongLine], long_lines: set[int]) -> Iterator[str]:
    """The lines for the csv reader; a line too long to read is noted (by its number as the reader counts) and
    handed on as an empty line, so the reader's line numbers stay right."""
    yield first
    for number, line in enumerate(lines, start=2):
        if isinstance(line, _LongLine):
            long_lines.add(number)
            yield "\n"
        else:
            yield line


def _sniff_delimiter(first: str) -> str:
    """The delimiter of a header without commas: csv.Sniffer on its start (its regexes are slow on long lines),
    else the most frequent candidate."""
    try:
        return csv.Sniffer().sniff(first[:4096], delimiters=";\t|").delimiter
    except csv.Error:
        return max(";\t|", key=first.count)


def _header(path: Path, names: list[str]) -> list[str]:
    if len(names) > MAX_COLUMNS:
        raise DataError(f"{path}: the header has {len(names):,} columns, more than the limit of {MAX_COLUMNS:,}; "
                        "keep the columns you train on")
    columns = [name.strip().lstrip("\ufeff") or f"column_{i}" for i, name in enumerate(names, start=1)]
    duplicates = sorted(name for name, count in Counter(columns).items() if count > 1)
    if duplicates:
        raise DataError(f"{path}: the header repeats column names [{_listed(duplicates)}]; rename them so no "
                        "column is lost")
    return columns


def _csv_row(file: str, columns: list[str], values: list[str], start: int, end: int) -> RawRow:
    source = SourceRef(file, line=start)
    if len(values) != len(columns):
        error = f"expected {len(columns)} fields (one per header column), found {len(values)}"
        if end > start:
            error += f"; the record runs from line {start} to {end}: is a quote left open?"
        return RawRow(source, None, error)
    return RawRow(source, dict(zip(columns, values, strict=True)))


# ---------------------------------------------------------------------------------------------- Parquet / Arrow

def _iter_parquet(path: Path, stats: LoadStats) -> Iterator[RawRow]:
    """Rows of a Parquet file. ClassLabel integers come out as their names when the file carries the features
    `datasets` writes into its schema metadata (every Parquet file it pushes to the Hub does)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    file, index = str(path), 0
    try:
        parquet = pq.ParquetFile(path)
        names = _label_names_in_schema(parquet.schema_arrow)
        # Small batches: a batch is decoded whole before its size can be charged to the budget.
        for batch in parquet.iter_batches(batch_size=256):
            for record in _batch_records(batch, path, stats):
                yield RawRow(SourceRef(file, item=index), _with_label_names(record, names, None))
                index += 1
    except (pa.ArrowException, OSError) as e:  # a cut-off or corrupt file: no row boundaries to recover
        raise DataError(f"{path}: cannot read the Parquet data after {index} rows ({e}); is the file complete?") from e


def _batch_records(batch: Any, path: Path, stats: LoadStats) -> list[dict]:
    """A record batch as Python dicts, once its decoded size fits in what is left of the load's budget."""
    stats.charge(path, _decoded_nbytes(batch))
    return batch.to_pylist()


def _decoded_nbytes(batch: Any) -> int:
    """What a batch takes once decoded. A dictionary-encoded column's `nbytes` counts each distinct value once,
    however many rows repeat it (50,000 rows of one 10 KB string: 10 KB), so its values are counted per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    total = 0
    for column in batch.columns:
        if not pa.types.is_dictionary(column.type):
            total += column.nbytes
            continue
        values = column.dictionary
        if pa.types.is_string(values.type) or pa.types.is_binary(values.type) or \
                pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
            sizes = pc.binary_length(values)
        else:  # fixed-width or nested values: their average size
            sizes = pa.array([values.nbytes // max(1, len(values))] * len(values), pa.int64())
        repeated = pc.sum(pc.take(sizes, column.indices.fill_null(0))).as_py() if len(values) else 0
        total += column.indices.nbytes + int(repeated or 0)
    return total


def _iter_arrow_file(path: Path, stats: LoadStats) -> Iterator[RawRow]:
    """One Arrow file (the Hub's .arrow data files, a `datasets` cache file), labels named as for Parquet."""
    file, index = str(path), 0
    for batch in _arrow_batches(path):
        names = _label_names_in_schema(batch.schema)
        for record in _batch_records(batch, path, stats):
            yield RawRow(SourceRef(file, item=index), _with_label_names(record, names, None))
            index += 1


def _label_names_in_schema(schema: Any) -> dict[str, list[str]]:
    """ClassLabel names from the features `datasets` stores in an Arrow schema's b"huggingface" metadata."""
    try:
        features = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
    except (AttributeError, KeyError, TypeError, ValueError, RecursionError):  # none, or not written by datasets
        return {}
    return _class_labels(features)


# ---------------------------------------------------------------------------------------------- folders

def _iter_folder(folder: Path, stats: LoadStats, follow_symlinks: bool) -> Iterator[RawRow]:
    """A `save_to_disk` folder, a Hub dataset folder, or a folder of documents, in that order of evidence."""
    if (folder / "dataset_dict.json").is_file():
        return _iter_dataset_dict(folder, _splits(folder), stats)
    if any((folder / marker).is_file() for marker in DATASET_MARKERS):
        return _iter_saved_dataset(folder, stats)
    hub = _hub_data_files(folder, follow_symlinks)
    if hub:
        return _iter_hub_folder(hub, stats)
    documents = _document_paths(folder, follow_symlinks)
    if not documents:
        raise DataError(f"{folder}: a folder with no {'/'.join(DOCUMENT_SUFFIXES)} files that is not a folder "
                        "saved by datasets.save_to_disk (no dataset_info.json, state.json or dataset_dict.json) "
                        f"and holds no data files ({', '.join(DATA_SUFFIXES)})")
    return (_document_row(p, p.relative_to(folder).as_posix(), stats) for p in documents)


def _estimate_folder(folder: Path, follow_symlinks: bool) -> int | None:
    if (folder / "dataset_dict.json").is_file():
        return sum(_arrow_row_count(folder / split) for split in _splits(folder))
    if any((folder / marker).is_file() for marker in DATASET_MARKERS):
        return _arrow_row_count(folder)
    hub = _hub_data_files(folder, follow_symlinks)
    if hub:
        counts = [estimate_rows(path) for path, _ in hub]
        return None if None in counts else sum(counts)
    return len(_document_paths(folder, follow_symlinks)) or None


# ---------------------------------------------------------------------------------------------- Hub dataset folders

def _hub_data_files(folder: Path, follow_symlinks: bool) -> list[tuple[Path, str]]:
    """(data file, split name) of a Hub dataset folder, train first; [] when the folder is not one.

    A Hub dataset is data files (data/train-00000-of-00002.parquet, test.jsonl, ...) with at most a README.md
    card beside them. A folder that also holds other documents is read as documents, as it always was: a
    corpus with a stray .json next to its pages is still a corpus.
    """
    files = _visible_files(folder, follow_symlinks)
    data = [p for p in files if p.suffix.lower() in DATA_SUFFIXES and p.name.lower() not in HUB_METADATA]
    if not data or any(p.suffix.lower() in DOCUMENT_SUFFIXES and p.name.lower() not in DATASET_CARDS
                       for p in files):
        return []
    _check_one_subset(folder, data)
    named = [(p, _split_name(p.relative_to(folder))) for p in data]
    _check_split_names(folder, named)
    return sorted(named, key=lambda pair: (_split_rank(pair[1]), pair[0].relative_to(folder).as_posix()))


def _visible_files(folder: Path, follow_symlinks: bool) -> list[Path]:
    """Every regular file below `folder`, skipping hidden files and folders (.git, .cache, .huggingface), and
    symlinks unless `follow_symlinks` (then each folder is entered once, so a link loop ends)."""
    found, entered = [], set()
    for root, dirs, files in os.walk(folder, followlinks=follow_symlinks):
        here = Path(root)
        key = (here.stat().st_dev, here.stat().st_ino)
        if key in entered:
            dirs[:] = []
            continue
        entered.add(key)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [here / name for name in files
                  if not name.startswith(".") and _regular(here / name, follow_symlinks)]
    return found


def _regular(path: Path, follow_symlinks: bool) -> bool:
    return (follow_symlinks or not path.is_symlink()) and path.is_file()


def _split_name(relative: Path) -> str:
    """The split a Hub data file belongs to: its name without the shard suffix ("train-00000-of-00002" ->
    "train", "test_prefs-00000-of-00001" -> "test_prefs"), else the nearest folder named like a split
    ("data/validation/0.parquet"); "train" when nothing says (the Hub's own default)."""
    for name in (_SHARD.sub("", relative.stem), *(part for part in reversed(relative.parts[:-1]))):
        if _split_of(name):
            return name
    return "train"


def _split_of(name: str) -> str | None:
    """The canonical split a split name means ("test_prefs" -> "test", "dev" -> "validation"), if any."""
    return next((SPLIT_WORDS[w] for w in re.split(r"[^a-z]+", name.lower()) if w in SPLIT_WORDS), None)


def _split_rank(name: str) -> int:
    split = _split_of(name)
    return SPLIT_ORDER.index(split) if split else len(SPLIT_ORDER)


def _check_one_subset(folder: Path, files: list[Path]) -> None:
    """Refuse a folder holding several subsets (configs) of a dataset: their layouts differ, or they would be
    counted twice. Folders that only group files (data/, split folders) do not make a subset."""
    subsets = {"/".join(part for part in p.relative_to(folder).parts[:-1] if part != "data" and not _split_of(part))
               for p in files}
    if len(subsets) > 1:
        names = _listed((f"{s}/" if s else "(top level)" for s in sorted(subsets)), show=str)
        raise DataError(f"{folder}: holds several subsets of a dataset ({names}); point at the folder of one")


def _check_split_names(folder: Path, named: list[tuple[Path, str]]) -> None:
    """Two differently named splits that mean the same one (train_prefs and train_sft in UltraFeedback) are
    different versions of the data: reading both would mix them."""
    by_split: dict[str, set[str]] = {}
    for _, name in named:
        by_split.setdefault(_split_of(name) or name, set()).add(name)
    clashes = [sorted(names) for names in by_split.values() if len(names) > 1]
    if clashes:
        listed = _listed((", ".join(names) for names in clashes), show=str, sep="; ")
        raise DataError(f"{folder}: holds several versions of one split ({listed}); point at the data files of "
                        "one of them, or move the others out of the folder")


def _iter_hub_folder(files: list[tuple[Path, str]], stats: LoadStats) -> Iterator[RawRow]:
    """Each data file's rows, marked with the split its name gives (`__split__`, as for save_to_disk folders)."""
    for path, split in files:
        for row in _iter_path(path, stats, follow_symlinks=False):
            if isinstance(row.data, dict):
                row.data["__split__"] = split
            yield row


def _document_paths(folder: Path, follow_symlinks: bool) -> list[Path]:
    """Every .txt/.md/.markdown file below `folder`, sorted, skipping hidden files and folders (.git, ...)."""
    found = [p for p in _visible_files(folder, follow_symlinks) if p.suffix.lower() in DOCUMENT_SUFFIXES]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _document_row(path: Path, name: str, stats: LoadStats) -> RawRow:
    """One document -> {"text", "path"}. Inside a folder a bad file becomes an error row, not an exception."""
    source = SourceRef(str(path))
    with path.open("rb") as f:
        raw = b"".join(_charged_chunks(f, path, stats))
    if not raw:
        return RawRow(source, {"text": "", "path": name})  # rows never disappear: cleaning rejects it as empty
    why = _binary_reason(raw[:SAMPLE_BYTES])
    if why:
        return RawRow(source, None, f"looks like a binary file ({why})")
    codec, errors = _codec(detect_encoding(raw[:SAMPLE_BYTES]))
    with io.TextIOWrapper(io.BytesIO(raw), encoding=codec, errors=errors) as text:  # universal newlines -> \n
        return RawRow(source, {"text": text.read(), "path": name})


def _splits(folder: Path) -> list[str]:
    where = folder / "dataset_dict.json"
    try:
        splits = [str(split) for split in json.loads(where.read_text("utf-8"))["splits"]]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise DataError(f"{where}: cannot read the split names ({type(e).__name__}); "
                        "save the dataset again with save_to_disk") from None
    for split in splits:
        _check_plain_name(where, "split", split)
    return splits


def _check_plain_name(where: Path, what: str, name: str) -> None:
    """A name from a dataset's metadata that becomes a path: it must stay inside the dataset's folder."""
    if Path(name).name != name or name in ("", ".", ".."):
        raise DataError(f"{where}: {what} {name[:100]!r} is not a file name inside the folder; save the dataset "
                        "again with save_to_disk")


def _iter_dataset_dict(folder: Path, splits: list[str], stats: LoadStats) -> Iterator[RawRow]:
    for split in splits:
        yield from _iter_saved_dataset(folder / split, stats, split)


def _iter_saved_dataset(folder: Path, stats: LoadStats, split: str | None = None) -> Iterator[RawRow]:
    """Rows of a `Dataset.save_to_disk` folder, read straight from its Arrow files (no `datasets` import).

    ClassLabel columns are stored as integers; they come out as their names, which is what a model should
    learn to answer and what the label chart should show.
    """
    names = _class_label_names(folder)
    file, index = str(folder), 0
    for arrow_file in _arrow_files(folder):
        for batch in _arrow_batches(arrow_file):
            for record in _batch_records(batch, arrow_file, stats):
                yield RawRow(SourceRef(file, item=index), _with_label_names(record, names, split))
                index += 1


def _with_label_names(record: dict, names: dict[str, list[str]], split: str | None) -> dict:
    for column, labels in names.items():
        value = record.get(column)
        if isinstance(value, int) and 0 <= value < len(labels):
            record[column] = labels[value]
    if split is not None:
        record["__split__"] = split
    return record


def _arrow_files(folder: Path) -> list[Path]:
    state = folder / "state.json"
    if state.is_file():
        try:
            names = [str(f["filename"]) for f in json.loads(state.read_text("utf-8"))["_data_files"]]
        except (ValueError, KeyError, TypeError, RecursionError):
            names = []
        for name in names:
            _check_plain_name(state, "data file", name)
        if names:
            return [folder / name for name in names]
    files = sorted(folder.glob("*.arrow"))
    if not files:
        raise DataError(f"{folder}: a datasets folder without .arrow data files; save it again with save_to_disk")
    return files


def _arrow_batches(path: Path) -> Iterator[Any]:
    import pyarrow as pa

    try:
        try:
            reader = pa.ipc.open_stream(pa.memory_map(str(path)))  # what save_to_disk writes
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            reader = (reader.get_batch(i) for i in range(reader.num_record_batches))
        yield from reader
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read the Arrow data ({e}); save the dataset again with save_to_disk") from e


def _arrow_row_count(folder: Path) -> int:
    return sum(batch.num_rows for f in _arrow_files(folder) for batch in _arrow_batches(f))


def _class_label_names(folder: Path) -> dict[str, list[str]]:
    info = folder / "dataset_info.json"
    try:
        features = json.loads(info.read_text("utf-8")).get("features") or {}
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}
    return _class_labels(features)


def _class_labels(features: Any) -> dict[str, list[str]]:
    if not isinstance(features, dict):
        return {}
    return {name: spec["names"] for name, spec in features.items()
            if isinstance(spec, dict) and spec.get("_type") == "ClassLabel" and spec.get("names")}
