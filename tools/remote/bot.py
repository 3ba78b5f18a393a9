"""A minimal BuildGrid worker, for the integration test only (runs on the buildgrid venv's Python).

Neither PyPI nor Debian ships a BuildGrid worker (the real one is buildbox-worker + buildbox-run-*,
built from source). This one speaks the Bots API with the protos and CAS client the buildgrid wheel
ships: it takes one lease at a time, stages the action's input root in a scratch directory, runs
the command there with exactly the command's environment (no sandbox, no container: the host
plays the worker image), uploads the outputs and returns the ActionResult in the lease. Each action
it ran is appended to --log as a JSON line, so the test can show which worker ran what.
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc, worker_pb2
from buildgrid._protos.google.rpc import code_pb2
from buildgrid.server.client.cas import download, upload
from buildgrid.server.client.channel import setup_channel
from buildgrid.server.utils.digests import create_digest

POLL_S = 30  # long-poll deadline of UpdateBotSession: the server answers early when it assigns work


def run_action(channel, instance: str, action: re_pb2.Action, scratch: str) -> tuple[re_pb2.ActionResult, dict]:
    with download(channel, instance=instance) as cas:
        command = cas.get_message(action.command_digest, re_pb2.Command())
        cas.download_directory(action.input_root_digest, scratch)
    cwd = os.path.join(scratch, command.working_directory)
    outputs = sorted(set(command.output_paths) | set(command.output_files) | set(command.output_directories))
    for path in outputs:  # REAPI: the worker creates the outputs' parent directories
        os.makedirs(os.path.dirname(os.path.join(cwd, path)), exist_ok=True)
    env = {v.name: v.value for v in command.environment_variables}
    timeout = action.timeout.seconds or None
    started = time.monotonic()
    try:
        proc = subprocess.run(
            list(command.arguments), check=False, cwd=cwd, env=env, capture_output=True, timeout=timeout
        )
        exit_code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        exit_code, stdout, stderr = 124, e.stdout or b"", (e.stderr or b"") + b"\nbot: action timed out\n"
    seconds = round(time.monotonic() - started, 1)

    result = re_pb2.ActionResult(exit_code=exit_code)
    with upload(channel, instance=instance) as cas:
        for path in outputs:
            full = os.path.join(cwd, path)
            if os.path.isdir(full):
                result.output_directories.add(path=path, tree_digest=cas.upload_tree(full))
            elif os.path.isfile(full):
                digest = cas.upload_file(full)
                result.output_files.add(path=path, digest=digest, is_executable=os.access(full, os.X_OK))
        result.stdout_digest.CopyFrom(cas.put_blob(io.BytesIO(stdout)))
        result.stderr_digest.CopyFrom(cas.put_blob(io.BytesIO(stderr)))
    return result, {"target": env.get("TEST_TARGET", command.arguments[0]), "exit_code": exit_code, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remote", required=True, help="http://127.0.0.1:PORT of the BuildGrid server")
    parser.add_argument("--instance", default="")
    parser.add_argument("--name", required=True)
    parser.add_argument("--property", action="append", default=[], help="KEY=VALUE this worker offers")
    parser.add_argument("--scratch", required=True, help="directory for the actions' input roots")
    parser.add_argument("--log", required=True, help="JSON lines: one per action run")
    args = parser.parse_args()

    channel, _ = setup_channel(args.remote)
    bots = bots_pb2_grpc.BotsStub(channel)
    properties = [worker_pb2.Device.Property(key=k, value=v) for k, v in (p.split("=", 1) for p in args.property)]
    session = bots_pb2.BotSession(
        bot_id=args.name,
        status=bots_pb2.BotStatus.OK,
        worker=worker_pb2.Worker(devices=[worker_pb2.Device(handle=args.name, properties=properties)]),
    )
    session = bots.CreateBotSession(
        bots_pb2.CreateBotSessionRequest(parent=args.instance, bot_session=session), timeout=POLL_S
    )
    print(f"{args.name}: session {session.name}", flush=True)
    while True:
        for lease in session.leases:
            if lease.state not in (bots_pb2.LeaseState.PENDING, bots_pb2.LeaseState.ACTIVE):
                continue
            action = re_pb2.Action()
            if not lease.payload.Unpack(action):  # BuildGrid sends the Action, or only its digest
                digest = re_pb2.Digest()
                lease.payload.Unpack(digest)
                with download(channel, instance=args.instance) as cas:
                    action = cas.get_message(digest, re_pb2.Action())
            scratch = os.path.join(args.scratch, lease.id.replace("/", "_"))
            os.makedirs(scratch)
            try:
                result, record = run_action(channel, args.instance, action, scratch)
                result.execution_metadata.worker = args.name
                lease.result.Pack(result)
                lease.status.code = code_pb2.OK
            except Exception as e:  # noqa: BLE001 -- report it in the lease, don't die: Bazel shows it
                record = {"error": repr(e)}
                lease.status.code, lease.status.message = code_pb2.INTERNAL, f"{args.name}: {e!r}"
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            lease.state = bots_pb2.LeaseState.COMPLETED
            record.update(worker=args.name, action=create_digest(action.SerializeToString()).hash)
            with open(args.log, "a") as log:
                log.write(json.dumps(record) + "\n")
            print(f"{args.name}: {json.dumps(record)}", flush=True)
        session = bots.UpdateBotSession(
            bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session), timeout=POLL_S
        )


if __name__ == "__main__":
    sys.exit(main())
