"""A corpus of real English sentences available offline: the first sentences of the docstrings of
Python's standard library (hand-written support of module 22).

No labels are needed: module 22 compares a quantized encoder with the FP32 one on these sentences.
The corpus is deterministic for a given Python version (docstrings change a little between
versions): a fixed list of side-effect-free modules, their public functions, classes and methods in
sorted order, the first sentence of each docstring kept when it reads like prose, duplicates
removed, then a seeded shuffle.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import re
import warnings

import numpy as np

MODULES = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bdb", "binascii", "bisect", "bz2",
    "calendar", "cmd", "codecs", "collections", "colorsys", "concurrent.futures", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "dis", "doctest",
    "email", "email.message", "email.utils", "enum", "filecmp", "fileinput", "fnmatch", "fractions",
    "ftplib", "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac",
    "html", "html.parser", "http.client", "http.cookies", "http.server", "imaplib", "inspect", "io",
    "ipaddress", "itertools", "json", "logging", "logging.handlers", "lzma", "mailbox", "math",
    "mimetypes", "netrc", "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle",
    "pickletools", "platform", "plistlib", "poplib", "pprint", "profile", "pstats", "queue",
    "quopri", "random", "re", "reprlib", "sched", "secrets", "selectors", "shelve", "shlex", "shutil",
    "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string", "struct",
    "subprocess", "symtable", "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "timeit",
    "tokenize", "trace", "traceback", "tracemalloc", "types", "typing", "unittest", "unittest.mock",
    "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "webbrowser",
    "xml.dom.minidom", "xml.etree.ElementTree", "xml.sax", "zipfile", "zipimport", "zlib",
    "builtins", "sys", "time", "cmath", "codeop", "compileall", "contextvars", "graphlib",
    "http.cookiejar", "keyword", "linecache", "locale", "marshal", "modulefinder", "pkgutil",
    "runpy", "stat", "sysconfig", "token", "urllib.robotparser", "wsgiref.headers",
    "wsgiref.simple_server", "xmlrpc.client", "xmlrpc.server", "zoneinfo", "importlib",
    "importlib.metadata", "importlib.resources", "asyncio.streams", "asyncio.tasks", "asyncio.events",
    "asyncio.base_events", "collections.abc", "multiprocessing.pool", "multiprocessing.connection",
    "multiprocessing.managers", "json.decoder", "json.encoder", "email.headerregistry", "email.policy",
    "email.parser", "email.generator", "unittest.case", "logging.config", "concurrent.futures.thread",
)
_FIRST = re.compile(r"^(.+?[.!?])(\s|$)", re.S)


def _first_sentence(doc: str | None) -> str | None:
    """The first sentence of a docstring when it is prose: 4 to 40 words, letters first, no code."""
    if not doc:
        return None
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = _FIRST.match(paragraph)
    if match is None:
        return None
    sentence = match.group(1)
    words = sentence.split()
    if not 4 <= len(words) <= 40 or not sentence[0].isalpha():
        return None
    if any(mark in sentence for mark in (">>>", "=", "`", "{", "->", "::", "\\")):
        return None
    return sentence


def _docstrings(module):
    """Docstrings of a module, its public classes and functions, and their methods, in sorted order."""
    yield module.__doc__
    for name, obj in sorted(vars(module).items()):
        home = getattr(obj, "__module__", None) or ""
        if name.startswith("_") or home.split(".")[0] not in (module.__name__.split(".")[0], "posix",
                                                               "_" + module.__name__.split(".")[0]):
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
            yield inspect.getdoc(obj)
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and callable(member):
                    yield inspect.getdoc(member)


@functools.lru_cache(maxsize=None)
def _all_sentences() -> tuple[str, ...]:
    seen, sentences = set(), []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:          # e.g. a Python built without ssl or sqlite3
            continue
        with warnings.catch_warnings():            # reading some attributes warns (typing.io, ...)
            warnings.simplefilter("ignore")
            docs = list(_docstrings(module))
        for doc in docs:
            sentence = _first_sentence(doc)
            if sentence and sentence.lower() not in seen:
                seen.add(sentence.lower())
                sentences.append(sentence)
    return tuple(sentences)


def stdlib_sentences(n: int | None = None, seed: int = 0) -> list[str]:
    """`n` distinct sentences (all of them if None), shuffled with `seed`: deterministic per Python version."""
    sentences = _all_sentences()
    order = np.random.default_rng(seed).permutation(len(sentences))
    if n is not None and n > len(sentences):
        raise ValueError(f"stdlib_sentences: asked for {n} sentences, the corpus has {len(sentences)}")
    return [sentences[i] for i in order[:n]]


def calibration_evaluation_split(n_calibration: int, n_evaluation: int, seed: int = 0):
    """Two disjoint lists of corpus sentences: calibration (to choose scales) and evaluation (to measure)."""
    sentences = stdlib_sentences(n_calibration + n_evaluation, seed)
    return sentences[:n_calibration], sentences[n_calibration:]
