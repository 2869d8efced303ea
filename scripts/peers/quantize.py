#!/usr/bin/env python3
"""Quantizes a GGUF with llama.cpp's own quantizer through llama-cpp-python's ctypes binding
(the wheel ships no llama-quantize binary). usage: quantize.py IN.gguf OUT.gguf TYPE (q4_0|q8_0|...)"""
import sys

import llama_cpp


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, dst, kind = sys.argv[1], sys.argv[2], sys.argv[3].upper()
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), llama_cpp.byref(params))
    sys.exit(rc)


if __name__ == "__main__":
    main()
