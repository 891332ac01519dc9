# Drives a running newsrec node with the real AWS SDK for Python (boto3) as a Firehose producer.
# Prints one JSON line with what the SDK saw; crates/cli/tests/firehose_sdk.rs checks it.
import json, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint = sys.argv[1]
client = boto3.client(
    "firehose", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id="test", aws_secret_access_key="test",
    config=Config(retries={"max_attempts": 1}),
)

def event(i, user="sdk"):
    return json.dumps({"event_id": f"fh-{i}", "user_id": f"{user}{i % 7}",
                       "article_id": f"a{i % 11}", "ts": 1506852000000 + i}) + "\n"

out = {}
single = client.put_record(DeliveryStreamName="clicks", Record={"Data": event(0).encode()})
out["put_record_id"] = single["RecordId"]
records = [{"Data": (event(1 + 3 * r) + event(2 + 3 * r) + event(3 + 3 * r)).encode()} for r in range(100)]
records.append({"Data": b'{"user_id":"u","article_id":"a","ts":"yesterday"}\n' + event(1000).encode()})
records.append({"Data": b"\xff\xfe not utf-8\n"})
batch = client.put_record_batch(DeliveryStreamName="clicks", Records=records)
out["batch_failed"] = batch["FailedPutCount"]
out["batch_ids"] = [r.get("RecordId") for r in batch["RequestResponses"]]

def error_of(call):
    try:
        call()
        return None
    except ClientError as error:
        return {"code": error.response["Error"]["Code"],
                "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
                "message": error.response["Error"].get("Message", "")}

out["too_many"] = error_of(lambda: client.put_record_batch(
    DeliveryStreamName="clicks", Records=[{"Data": event(5000 + i).encode()} for i in range(501)]))
out["too_large_record"] = error_of(lambda: client.put_record(
    DeliveryStreamName="clicks", Record={"Data": b"x" * (1_024_000 + 1)}))
out["bad_stream"] = error_of(lambda: client.put_record(
    DeliveryStreamName="no spaces allowed", Record={"Data": event(9000).encode()}))
print(json.dumps(out))
