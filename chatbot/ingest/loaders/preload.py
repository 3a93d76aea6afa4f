"""Imported once by the parse workers' forkserver, so each forked worker starts with every parser loaded."""

import docx  # noqa: F401
import ebooklib  # noqa: F401
import openpyxl  # noqa: F401
import pdfplumber  # noqa: F401
import pptx  # noqa: F401
import pypdfium2  # noqa: F401

import chatbot.ingest.parsing  # noqa: F401
