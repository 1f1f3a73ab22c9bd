"""A minimal SMTP server for Emporium's tests: accepts messages and writes each to a directory.

Usage: smtp_sink.py PORT DIRECTORY [--refuse TEXT] [--defer TEXT] [--fail-first N]
  --refuse TEXT    answer 550 (refused for good) to any recipient containing TEXT
  --defer TEXT     answer 450 (try again later), every time, to any recipient containing TEXT
  --fail-first N   answer 451 (try again later) to the first N messages' DATA, then accept
Prints "ready" once it listens on 127.0.0.1:PORT.
"""
import argparse
import os
import socketserver
import threading


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write((line + "\r\n").encode())

    def handle(self):
        self.reply("220 emporium-test-sink ready")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            command = line.decode(errors="replace").strip()
            upper = command.upper()
            if upper.startswith("EHLO") or upper.startswith("HELO"):
                self.reply("250-emporium-test-sink")
                self.reply("250 8BITMIME")
            elif upper.startswith("RCPT TO"):
                refuse, defer = self.server.options.refuse, self.server.options.defer
                if refuse and refuse in command:
                    self.reply("550 no such mailbox")
                elif defer and defer in command:
                    self.reply("450 mailbox busy, try again later")
                else:
                    self.reply("250 OK")
            elif upper.startswith("MAIL FROM"):
                self.reply("250 OK")
            elif upper == "DATA":
                self.reply("354 end with <CRLF>.<CRLF>")
                lines = []
                while True:
                    data = self.rfile.readline()
                    if data in (b".\r\n", b".\n", b""):
                        break
                    lines.append(data[1:] if data.startswith(b"..") else data)
                with self.server.lock:
                    if self.server.failures_left > 0:
                        self.server.failures_left -= 1
                        self.reply("451 try again later")
                        continue
                    count = len(os.listdir(self.server.directory))
                    with open(os.path.join(self.server.directory, f"{count:06d}.eml"), "wb") as out:
                        out.write(b"".join(lines))
                self.reply("250 queued")
            elif upper == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("directory")
    parser.add_argument("--refuse")
    parser.add_argument("--defer")
    parser.add_argument("--fail-first", type=int, default=0)
    options = parser.parse_args()
    os.makedirs(options.directory, exist_ok=True)
    server = Server(("127.0.0.1", options.port), Session)
    server.directory = options.directory
    server.options = options
    server.lock = threading.Lock()
    server.failures_left = options.fail_first
    print("ready", flush=True)
    server.serve_forever()
