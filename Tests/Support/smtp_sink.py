"""A minimal SMTP server for Emporium's tests: accepts every message and writes it to a directory.

Usage: smtp_sink.py PORT DIRECTORY. Prints "ready" once it listens on 127.0.0.1:PORT.
"""
import os
import socketserver
import sys


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 emporium-test-sink ready")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode(errors="replace").strip().upper()
            if command.startswith("EHLO") or command.startswith("HELO"):
                self.reply("250-emporium-test-sink")
                self.reply("250 8BITMIME")
            elif command.startswith("MAIL FROM") or command.startswith("RCPT TO"):
                self.reply("250 OK")
            elif command == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while True:
                    data = self.rfile.readline()
                    if data in (b".\r\n", b".\n", b""):
                        break
                    lines.append(data[1:] if data.startswith(b"..") else data)
                count = len(os.listdir(self.server.directory))
                with open(os.path.join(self.server.directory, f"{count:06d}.eml"), "wb") as out:
                    out.write(b"".join(lines))
                self.reply("250 queued")
            elif command == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    port, directory = int(sys.argv[1]), sys.argv[2]
    os.makedirs(directory, exist_ok=True)
    server = Server(("127.0.0.1", port), Session)
    server.directory = directory
    print("ready", flush=True)
    server.serve_forever()
