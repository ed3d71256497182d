"""Static checks of the image's Dockerfile: every file it downloads is verified against a pinned
SHA-256 before it reaches the image, and the verification script refuses a missing, placeholder
or wrong digest (it is run here on files of the test's own).

    python3 -m unittest discover -s infra/aws -p 'test_*.py'     (infra/local/test.sh runs it)
"""

import hashlib
import os
import re
import subprocess
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
VERIFY = os.path.join(ROOT, "infra", "docker", "verify-download.sh")


def dockerfile_instructions():
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    with open(os.path.join(ROOT, "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    out, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages():
    """The Dockerfile's stages, each a list of (instruction, arguments) starting with its FROM."""
    out = []
    for ins, args in dockerfile_instructions():
        if ins == "FROM":
            out.append([])
        if out:
            out[-1].append((ins, args))
    return out


def verify(path, digest, arg="TEST_SHA256"):
    return subprocess.run(
        ["sh", VERIFY, path, digest, arg], capture_output=True, text=True, check=False
    )


class Downloads(unittest.TestCase):
    def test_every_download_is_verified_against_a_pinned_digest(self):
        downloads = 0
        for stage in stages():
            declared = {a.split("=", 1)[0] for i, a in stage if i == "ARG"}
            for n, (ins, args) in enumerate(stage):
                if ins == "RUN":
                    self.assertNotRegex(args, r"\b(curl|wget)\b|https?://", "download only by ADD, verified")
                if ins != "ADD" or not re.search(r"https?://", args):
                    continue
                downloads += 1
                words = [w for w in args.split() if not w.startswith("--")]
                self.assertEqual(len(words), 2, f"one URL, one destination: ADD {args}")
                dest = words[1]
                checked = [
                    a
                    for i, a in stage[n + 1 :]
                    if i == "RUN" and re.search(r"\bverify-download\s+" + re.escape(dest) + r"\s", a)
                ]
                self.assertEqual(len(checked), 1, f"{dest} is verified in its stage: {args}")
                m = re.search(r'"\$\{?(\w+)\}?"\s+(\w+)\s*$', checked[0])
                self.assertIsNotNone(m, checked[0])
                self.assertEqual(m.group(1), m.group(2), "the message names the argument checked")
                self.assertIn(m.group(1), declared, f"{m.group(1)} is a build argument of the stage")
                self.assertNotRegex(dest, r"^/etc/|^/usr/", "downloaded to a scratch path, then copied")
        self.assertGreaterEqual(downloads, 1, "the RDS CA bundle is downloaded")
        # The runtime stage takes the bundle from the verifying stage, never from the network.
        runtime = stages()[-1]
        self.assertFalse(any(i == "ADD" and re.search(r"https?://", a) for i, a in runtime))
        self.assertTrue(
            any(i == "COPY" and "--from=rds-ca" in a and "rds-global-bundle.pem" in a for i, a in runtime)
        )

    def test_verification_refuses_a_missing_placeholder_or_wrong_digest(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bundle.pem")
            with open(path, "wb") as f:
                f.write(b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
            with open(path, "rb") as f:
                good = hashlib.sha256(f.read()).hexdigest()

            ok = verify(path, good)
            self.assertEqual(ok.returncode, 0, ok.stderr)

            missing = verify(path, "")
            self.assertNotEqual(missing.returncode, 0)
            self.assertIn("TEST_SHA256 is not set", missing.stderr)

            for placeholder in ("<sha256 of global-bundle.pem>", "TODO", good.upper(), good[:-1], good + "0"):
                r = verify(path, placeholder)
                self.assertNotEqual(r.returncode, 0, placeholder)
                self.assertIn("is not a SHA-256", r.stderr, placeholder)

            wrong = verify(path, hashlib.sha256(b"another bundle").hexdigest())
            self.assertNotEqual(wrong.returncode, 0)
            self.assertIn("does not match TEST_SHA256", wrong.stderr)
            self.assertIn(good, wrong.stderr, "says what was downloaded")

            gone = verify(os.path.join(d, "absent.pem"), good)
            self.assertNotEqual(gone.returncode, 0)


if __name__ == "__main__":
    unittest.main()
