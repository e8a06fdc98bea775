"""The MLLP server over a real socket, file conversion, and entry-point registration."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path

import pytest

from sources import available_sources, load_source
from sources.convert import convert_files
from sources.hl7 import HL7Source
from sources.hl7.mllp import frame
from sources.hl7.server import MLLPServer, read_frame
from tests.test_sources_hl7 import S12_V23_NAIVE, S12_V25, adt, siu


def segments(ack: bytes) -> dict[str, list[str]]:
    return {line[:3]: line.split("|") for line in ack.decode().split("\r") if line}


def test_mllp_server_acks_after_publish() -> None:
    async def scenario() -> None:
        published: list[tuple[list[dict], bytes]] = []
        down = {"now": False}

        async def publish(events: list[dict], raw: bytes) -> None:
            if down["now"]:
                raise ConnectionError("kafka unreachable")
            published.append((events, raw))

        source = HL7Source({"timezone": "America/New_York"})
        async with MLLPServer(source, publish, port=0) as server:
            reader, writer = await asyncio.open_connection(*server.address)

            async def send(message: str) -> dict[str, list[str]]:
                writer.write(frame(message.encode()))
                await writer.drain()
                return segments(await asyncio.wait_for(read_frame(reader), 5))

            ack = await send(S12_V25)
            assert ack["MSA"][:3] == ["MSA", "AA", "MSG00001"]
            assert ack["MSH"][8] == "ACK^S12^ACK" and ack["MSH"][2:6] == ["JOURNEYS", "JRN", "EPIC", "NORTHCLINIC"]
            assert published[0][0][0]["event_type"] == "appointment.booked" and published[0][1] == S12_V25.encode()

            ack = await send(S12_V25.replace("SIU^S12^SIU_S12", "ADT^A31"))
            assert ack["MSA"][1] == "AE" and ack["MSA"][3].startswith("hl7_unsupported_event at MSH-9")
            assert ack["ERR"][3].startswith("201^") and ack["ERR"][2] == "MSH^1^9^1^1^1"

            down["now"] = True  # a moved start while Kafka is down: AR, and the move is not forgotten
            moved = siu("S14", "M-77", start="20260310110000-0500")
            assert (await send(moved))["MSA"][1] == "AR"
            down["now"] = False
            assert (await send(moved))["MSA"][1] == "AA"
            assert published[-1][0][0]["event_type"] == "appointment.rescheduled"
            assert len(published) == 2
            writer.close()

    asyncio.run(scenario())


def test_convert_files_mllp_and_msh_split(tmp_path: Path) -> None:
    framed = tmp_path / "siu.mllp"
    framed.write_bytes(frame(S12_V25.encode()) + b"\r\n" + frame(siu("S15", "M-2", reason="PAT").encode()))
    plain = tmp_path / "adt.hl7"
    plain.write_text(adt("A10", "A-1", "20260310091000-0500").replace("\r", "\n")
                     + adt("A31", "A-2", "20260310091000-0500") + S12_V23_NAIVE)
    out, err = io.StringIO(), io.StringIO()
    assert convert_files("hl7", [framed, plain], out=out, err=err) == 1
    lines = out.getvalue().splitlines()
    assert [line.split('"event_type":"')[1].split('"')[0] for line in lines] == [
        "appointment.booked", "appointment.cancelled", "patient.arrived",
    ]
    assert err.getvalue().splitlines() == [
        f"{plain}: message 2: hl7_unsupported_event at MSH-9: ADT^A31 is not mapped by this source"
        " (mapped: ADT^A02, ADT^A03, ADT^A04, ADT^A08, ADT^A10, ADT^A11, ADT^A13, SIU^S12, SIU^S13,"
        " SIU^S14, SIU^S15, SIU^S17, SIU^S26)",
        f"{plain}: message 3: no_timezone at MSH-7: 202603020816 has no UTC offset and the source has no"
        " timezone setting: set the source's `timezone` (an IANA name)",
    ]
    out2 = io.StringIO()
    assert convert_files("hl7", [framed], out=out2, err=io.StringIO(), config={"name": "x"}) == 0


KIOSK = '''
import csv, io
from pydantic import BaseModel
from sources.base import Prepared, Rejection, Source, checked

class KioskConfig(BaseModel):
    name: str = "kiosk"
    site_id: str = "north"

class KioskCsvSource(Source):
    config_model = KioskConfig
    def split_messages(self, data):
        return data.splitlines()[1:]
    def prepare(self, message):
        text = message.decode() if isinstance(message, bytes) else message
        kiosk_id, appointment_id, patient_id, department, at = next(csv.reader(io.StringIO(text)))
        if not at.endswith(("Z", "+00:00")) and "-" not in at[10:] and "+" not in at[10:]:
            return Rejection("bad_timestamp", "checked_in_at", f"{at} has no offset")
        return Prepared(checked([{
            "event_id": f"{kiosk_id}-{appointment_id}", "event_type": "patient.checked_in",
            "schema_version": 1, "occurred_at": at, "source": self.config.name,
            "patient_id": patient_id, "appointment_id": appointment_id,
            "site_id": self.config.site_id, "department": department, "channel": "kiosk"}]))
'''


def test_a_source_registered_through_the_entry_point_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kiosk_source.py").write_text(KIOSK)
    dist = tmp_path / "kiosk_source-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kiosk-source\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text('[journeys.sources]\nkiosk-csv = kiosk_source:KioskCsvSource\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert available_sources()["kiosk-csv"] == "kiosk_source:KioskCsvSource"
    data = tmp_path / "kiosk.csv"
    data.write_text("kiosk,appointment,patient,department,at\nK1,APT-1,MRN1,cardiology,2026-03-10T09:12:00-05:00\n")
    out = io.StringIO()
    assert convert_files("kiosk-csv", [data], out=out, err=io.StringIO(), config={"site_id": "south"}) == 0
    assert '"site_id":"south"' in out.getvalue() and '"channel":"kiosk"' in out.getvalue()
    assert load_source("kiosk-csv").name == "kiosk"
    sys.modules.pop("kiosk_source", None)
