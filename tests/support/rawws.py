"""A WebSocket client on a bare socket that reads only when told: a slow reader, or a peer that never answers."""
import base64
import os
import socket
import struct
import time

CLOSE = 8


class RawClient:
    """Completes the handshake of `/ws/{user_id}?token=...`, then reads nothing until `read_frames`."""

    def __init__(self, port: int, user_id: str, token: str, *, rcvbuf: int | None = None, timeout: float = 15):
        self.sock = socket.socket()
        if rcvbuf is not None:  # before connect, so that the advertised window is small too
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws/{user_id}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, f"closed during the handshake: {self.buffer!r}"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.port = self.sock.getsockname()[1]

    def read_frames(self, timeout: float = 15) -> list[tuple[int, bytes]]:
        """Everything the server sent, as (opcode, payload), up to its close frame, the end of the stream, or
        `timeout` seconds."""
        frames, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            frame = self._next_frame()
            if frame is not None:
                frames.append(frame)
                if frame[0] == CLOSE:
                    break
                continue
            try:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(1 << 16)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            self.buffer += chunk
        return frames

    def _next_frame(self) -> tuple[int, bytes] | None:
        if len(self.buffer) < 2:
            return None
        opcode, length, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if length == 126:
            if len(self.buffer) < 4:
                return None
            length, offset = struct.unpack("!H", self.buffer[2:4])[0], 4
        elif length == 127:
            if len(self.buffer) < 10:
                return None
            length, offset = struct.unpack("!Q", self.buffer[2:10])[0], 10
        if len(self.buffer) < offset + length:
            return None
        payload, self.buffer = self.buffer[offset:offset + length], self.buffer[offset + length:]
        return opcode, payload

    def close(self):
        self.sock.close()


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    """The code of the close frame among `frames`, if there is one."""
    for opcode, payload in frames:
        if opcode == CLOSE:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    return None
