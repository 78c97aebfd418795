#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Mock OpenAI-compatible upstream (see mockserver.py for the control API).
Prints its port, serves until killed."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mockserver  # noqa: E402

if __name__ == "__main__":
    mockserver.serve("openai")
