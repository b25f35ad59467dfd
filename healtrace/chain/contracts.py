"""The compiled HealTrace contracts, loaded from the artifacts shipped inside the package.

The Solidity sources live in ``healtrace/chain/contracts/`` and are compiled by
``healtrace/chain/contracts/build.mjs`` (``make contracts``) into
``healtrace/chain/artifacts/<Name>.json``; ``make contracts-check`` proves the committed
artifacts match the sources. At run time nothing is compiled: this module only reads JSON.

* ``EvidenceRegistry`` — anchors Merkle roots of evidence batches (see :mod:`.receipt`).
* ``HealthToken`` — the capped, pausable reward token, minted once per batch id.
* ``ConsentRegistry`` — patients' grants, directly or by EIP-712 signature (see
  :mod:`.consent_sig`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, cast, get_args

from eth_typing import ABI, HexStr

__all__ = ["CONTRACT_NAMES", "Artifact", "ContractName", "load_artifact"]

ContractName = Literal["ConsentRegistry", "EvidenceRegistry", "HealthToken"]
#: Every contract with a committed artifact.
CONTRACT_NAMES: tuple[ContractName, ...] = get_args(ContractName)


@dataclass(frozen=True)
class Artifact:
    """One compiled contract: what web3 needs to deploy it and talk to it.

    ``abi`` is excluded from hashing (it is a list); two artifacts compare equal when every
    field does.
    """

    name: str
    abi: ABI = field(hash=False, repr=False)
    #: Creation code, ``0x``-prefixed hex (constructor arguments are appended by web3).
    bytecode: HexStr = field(repr=False)
    #: Runtime code as deployed, ``0x``-prefixed hex (what ``eth_getCode`` returns).
    deployed_bytecode: HexStr = field(repr=False)
    #: The full solc version string, e.g. ``0.8.37+commit.f401782d.Emscripten.clang``.
    compiler_version: str = ""


def _field(data: dict[str, Any], key: str, kind: type, name: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ValueError(f"artifact {name}.json has no valid {key!r}; rebuild with make contracts")
    return value


def load_artifact(name: ContractName) -> Artifact:
    """Read the committed artifact of contract ``name``.

    Raises ValueError for a name that is not one of :data:`CONTRACT_NAMES`, or when the
    artifact file is malformed.
    """
    if name not in CONTRACT_NAMES:
        raise ValueError(f"unknown contract {name!r}; expected one of {', '.join(CONTRACT_NAMES)}")
    path = resources.files("healtrace.chain").joinpath("artifacts", f"{name}.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"artifact {name}.json is not a JSON object; rebuild with make contracts")
    compiler = _field(data, "compiler", dict, name)
    if _field(data, "contractName", str, name) != name:
        raise ValueError(f"artifact {name}.json is of another contract; run make contracts")
    return Artifact(
        name=name,
        abi=cast(ABI, _field(data, "abi", list, name)),
        bytecode=HexStr(_field(data, "bytecode", str, name)),
        deployed_bytecode=HexStr(_field(data, "deployedBytecode", str, name)),
        compiler_version=str(compiler.get("version", "")),
    )
