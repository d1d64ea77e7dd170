"""An outside check of a pedf certificate, with implementations pedf did not write.

  python check_certificate.py jcs FILE.json
      prints the RFC 8785 canonical form of FILE.json (Python `rfc8785`).
  python check_certificate.py certificate CERT.json PUBLIC_KEY_HEX RECORDS.csv [CERT.pdf]
      checks the certificate's ed25519 signature over the RFC 8785 canonical JSON of the
      certificate without `signature` (`rfc8785` + `cryptography`), rebuilds the records' Merkle
      root by RFC 6962 (`pymerkle`) from the leaf rule the certificate states, and, with a PDF,
      extracts its text (`pypdf`) and parses its embedded fonts (`fontTools`).

Prints one line per check ("ok ..." or "FAIL ...") and exits 1 if any failed.
"""

import csv
import io
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pymerkle import InmemoryTree

FIELDS = ["pv_kwh", "grid_import_kwh", "grid_export_kwh", "battery_charge_kwh",
          "battery_discharge_kwh", "load_kwh", "ev_kwh"]


def record_lines(path, zone, start, end):
    """The leaf lines: records inside [start, end), as the certificate's leaf rule says."""
    with open(path, encoding="utf-8") as f:
        rows = csv.reader(line for line in f if not line.startswith("#") and line.strip())
        header = next(rows)
        for row in rows:
            cols = dict(zip(header, row))
            t = datetime.fromisoformat(cols["start"])
            if not (start <= t < end):
                continue
            line = t.astimezone(zone).isoformat() + "".join(
                "," + format(float(cols[k]), ".6f") for k in FIELDS)
            chargers = sorted((k[3:], float(v)) for k, v in cols.items()
                              if k.startswith("ev:") and float(v) != 0.0)
            line += "".join(f",{c}={v:.6f}" for c, v in chargers)
            batteries = sorted({k.split(":", 1)[1] for k in cols
                                if k.startswith(("charge:", "discharge:"))})
            for b in batteries:
                for flow in ("charge", "discharge"):
                    v = float(cols[f"{flow}:{b}"])
                    if v != 0.0:
                        line += f",{flow}:{b}={v:.6f}"
            yield line


def check_certificate(cert_path, key_hex, records_path, pdf_path=None):
    failures = 0

    def report(ok, what):
        nonlocal failures
        print(("ok " if ok else "FAIL ") + what)
        failures += 0 if ok else 1

    with open(cert_path, encoding="utf-8") as f:
        cert = json.load(f)
    signature = bytes.fromhex(cert.pop("signature"))
    signed = rfc8785.dumps(cert)
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex)).verify(signature, signed)
        report(True, f"signature over the RFC 8785 bytes ({len(signed)} bytes)")
    except InvalidSignature:
        report(False, "signature over the RFC 8785 bytes")
    zone = ZoneInfo(cert["park"]["time_zone"])
    start = datetime.fromisoformat(cert["period"]["from"])
    end = datetime.fromisoformat(cert["period"]["to"])
    tree = InmemoryTree(algorithm="sha256")
    count = 0
    for line in record_lines(records_path, zone, start, end):
        tree.append_entry(line.encode("utf-8"))
        count += 1
    root = tree.get_root().hex() if count else ""
    report(root == cert["records"]["merkle_root"] and count == cert["records"]["count"],
           f"RFC 6962 Merkle root of {count} records {root}")
    if pdf_path:
        from fontTools.ttLib import TTFont
        from pypdf import PdfReader
        reader = PdfReader(pdf_path)
        text = "".join(page.extract_text() for page in reader.pages)
        report("碳减排" in text and cert["serial"] in text,
               f"PDF text of {len(reader.pages)} pages has the Chinese title and the serial")
        fonts = 0
        for page in reader.pages:
            for font in page["/Resources"]["/Font"].values():
                font = font.get_object()
                cid = font["/DescendantFonts"][0].get_object()
                data = cid["/FontDescriptor"].get_object()["/FontFile2"].get_object().get_data()
                TTFont(io.BytesIO(data))["glyf"]  # parses the subset font's outlines
                fonts += 1
        report(fonts > 0, f"{fonts} embedded fonts parse")
    return failures


def main(argv):
    if argv[1:2] == ["jcs"]:
        with open(argv[2], encoding="utf-8") as f:
            sys.stdout.buffer.write(rfc8785.dumps(json.load(f)))
        return 0
    if argv[1:2] == ["certificate"]:
        return 1 if check_certificate(*argv[2:]) else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
