#!/usr/bin/env python3
"""Write the seed corpus of fuzz_rpc_server (tests/fuzz/corpus/fuzz_rpc_server).

Each seed is what an h2c gRPC client sends on one connection: the client
preface, SETTINGS, then requests as HEADERS (HPACK literals, no Huffman) and
DATA frames carrying gRPC length-prefixed messages, for the methods the fuzz
target registers. The first byte of a seed also picks the fuzz target's
chunk size; the preface starts with 'P', which gives chunks of 561 bytes.

Usage: tests/rpc/make_fuzz_seeds.py [OUT_DIR]
"""
import os
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", stream) + payload


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2)."""
    def string(s):
        b = s.encode()
        assert len(b) < 127
        return bytes([len(b)]) + b
    return b"\x00" + string(name) + string(value)


def request_headers(stream, path, extra=(), end_stream=False):
    fields = [(":method", "POST"), (":scheme", "http"), (":path", path),
              (":authority", "localhost"), ("content-type", "application/grpc"),
              ("te", "trailers"), *extra]
    block = b"".join(hpack_literal(n, v) for n, v in fields)
    return frame(HEADERS, END_HEADERS | (END_STREAM if end_stream else 0), stream, block)


def grpc_message(body, flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(body) if length is None else length) + body


def start():
    return PREFACE + frame(SETTINGS, 0, 0)


def seeds():
    yield "unary_echo", (start() + request_headers(1, "/f.F/Echo") +
                         frame(DATA, END_STREAM, 1, grpc_message(b"hello")))
    yield "many_methods", (
        start() + frame(SETTINGS, ACK, 0) +
        request_headers(1, "/f.F/Later") + frame(DATA, END_STREAM, 1, grpc_message(b"x")) +
        request_headers(3, "/f.F/Stream") + frame(DATA, END_STREAM, 3, grpc_message(b"s" * 40)) +
        request_headers(5, "/f.F/Hang", [("grpc-timeout", "1n")]) +
        frame(DATA, END_STREAM, 5, grpc_message(b"")) +
        request_headers(7, "/f.F/Stream") + frame(DATA, END_STREAM, 7, grpc_message(b"hang")) +
        frame(PING, 0, 0, b"12345678") + frame(RST_STREAM, 0, 7, struct.pack(">I", 8)) +
        frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1000)))
    # One message split over several DATA frames, then a second request.
    msg = grpc_message(b"m" * 300)
    yield "split_message", (start() + request_headers(1, "/f.F/Echo") +
                            frame(DATA, 0, 1, msg[:3]) + frame(DATA, 0, 1, msg[3:100]) +
                            frame(DATA, END_STREAM, 1, msg[100:]) +
                            request_headers(3, "/f.F/Echo") +
                            frame(DATA, END_STREAM, 3, grpc_message(b"")))
    yield "bad_messages", (
        start() +
        request_headers(1, "/f.F/Echo") + frame(DATA, END_STREAM, 1, grpc_message(b"abc", flag=1)) +
        request_headers(3, "/f.F/Echo") + frame(DATA, 0, 3, grpc_message(b"", length=5000)) +
        request_headers(5, "/f.F/Echo") + frame(DATA, END_STREAM, 5, grpc_message(b"ab", length=9)) +
        request_headers(7, "/f.F/Nope") + frame(DATA, END_STREAM, 7, grpc_message(b"")) +
        request_headers(9, "/f.F/Echo", [("grpc-encoding", "gzip")], end_stream=True) +
        frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    # A client-streaming call: messages over frames, one pausing, then the
    # end; a second upload that asks to fail half-way; a third cut off.
    up = grpc_message(b"one") + grpc_message(b"pause") + grpc_message(b"three" * 20)
    yield "upload", (start() + request_headers(1, "/f.F/Up") +
                     frame(DATA, 0, 1, up[:10]) + frame(DATA, END_STREAM, 1, up[10:]) +
                     request_headers(3, "/f.F/Up") +
                     frame(DATA, 0, 3, grpc_message(b"a") + grpc_message(b"fail")) +
                     frame(DATA, END_STREAM, 3, grpc_message(b"late")) +
                     request_headers(5, "/f.F/Up") + frame(DATA, 0, 5, grpc_message(b"x" * 50)[:20]) +
                     frame(RST_STREAM, 0, 5, struct.pack(">I", 8)))
    # A bidirectional call: messages answered while the request is open,
    # then the end; a second that asks to fail half-way; a third reset.
    bi = grpc_message(b"one") + grpc_message(b"two" * 30) + grpc_message(b"three" * 200)
    yield "bidi", (start() + request_headers(1, "/f.F/Bidi") +
                   frame(DATA, 0, 1, bi[:10]) + frame(DATA, 0, 1, bi[10:]) +
                   frame(DATA, END_STREAM, 1, grpc_message(b"last")) +
                   request_headers(3, "/f.F/Bidi") +
                   frame(DATA, 0, 3, grpc_message(b"a") + grpc_message(b"fail")) +
                   frame(DATA, END_STREAM, 3, grpc_message(b"late")) +
                   request_headers(5, "/f.F/Bidi") + frame(DATA, 0, 5, grpc_message(b"x" * 3000)) +
                   frame(RST_STREAM, 0, 5, struct.pack(">I", 8)))
    yield "http1", b"POST /f.F/Echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "..", "fuzz", "corpus", "fuzz_rpc_server")
    os.makedirs(out, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
