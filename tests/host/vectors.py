"""NIST CAVP ECDSA test vectors, from the PyPI package cryptography-vectors."""
import hashlib
from pathlib import Path

import cryptography_vectors


def cavp_cases(filename):
    """(Qx, Qy, digest, r, s, valid) for every [P-256,SHA-256] case in a CAVP file."""
    path = Path(cryptography_vectors.__file__).parent / "asymmetric" / "ECDSA" / "FIPS_186-3" / filename
    cases, section, case = [], None, {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[P-256,SHA-256]" and " = " in line:
            name, value = line.split(" = ", 1)
            case[name] = value
            if name == ("Result" if filename == "SigVer.rsp" else "S"):
                cases.append((
                    int(case["Qx"], 16), int(case["Qy"], 16), hashlib.sha256(bytes.fromhex(case["Msg"])).digest(),
                    int(case["R"], 16), int(case["S"], 16), case.get("Result", "P").startswith("P"),
                ))
                case = {}
    return cases
