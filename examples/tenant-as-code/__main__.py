"""An example tenant's whole configuration as a Pulumi program (docs/operators.md, "Tenants as code").

pip install 'switchboard[pulumi]'
pulumi login file://$PWD/.state          # or any backend
pulumi stack init acme
pulumi config set apiUrl https://switchboard.example.com
pulumi config set --secret apiKey sbk_...  # an admin key: `switchboard keys create admin`
pulumi preview                             # what would change, before it does
pulumi up
"""

from pathlib import Path

import pulumi
from switchboard.tenant_as_code import Agent, Flow, Number, Queue, Seats, Site, Tenant, Trunk

config = pulumi.Config()
tenant = Tenant(
    "acme",
    api_url=config.get("apiUrl") or "http://127.0.0.1:8080",
    api_key=config.require_secret("apiKey"),
    timezone="Europe/Paris",
    language="en",
)
Seats("seats", tenant, count=config.get_int("seats") or 5)

paris = Site("paris", tenant, site_name="Paris", timezone="Europe/Paris")
support = Queue(
    "support",
    tenant,
    queue_name="Support",
    skills={"support": 1},
    sl_percent=80,
    sl_seconds=20,
    site_id=paris.id,
    announce_seconds=60,
)
sales = Queue(
    "sales",
    tenant,
    queue_name="Sales",
    skills={"sales": 1},
    hours={day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
    closed_treatment="queue",
    closed_queue_id=support.id,
)
Agent(
    "ann",
    tenant,
    agent_name="Ann Martin",
    email=config.get("annEmail") or "ann@acme.example",
    site_id=paris.id,
    skills={"support": 8, "sales": 3},
    languages=["en", "fr"],
)

# The IVR flow names its queues: deploy it once they exist (the API checks the names).
main_line = Flow(
    "main-line",
    tenant,
    source=(Path(__file__).parent / "main-line.yaml").read_text(),
    opts=pulumi.ResourceOptions(depends_on=[support, sales]),
)
# A new E.164 here is another number (Pulumi claims it, then releases the old one); a new route is in place.
Number("main-number", tenant, e164=config.get("mainNumber") or "+33170000000", flow=main_line.name)
Number("sales-direct", tenant, e164=config.get("salesNumber") or "+33170000001", queue_id=sales.id)
Trunk("carrier", tenant, allowed_ips=["203.0.113.10"], outbound_host="sip.carrier.example")

pulumi.export("tenant_id", tenant.id)
pulumi.export("main_flow", main_line.name)
