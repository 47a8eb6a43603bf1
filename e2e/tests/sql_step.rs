//! The SQL step image's entry script (`images/sluice-sql-step`), proven against a real PostgreSQL:
//! on the host (`sql_step/host.rs`, no cluster needed: the script runs under the host's `sh`
//! with a server of the test's own), and as a real container on the real node
//! (`sql_step/real_node.rs`, skipped with a printed reason when `SLUICE_REAL_NODE=0`). Both run
//! the SQL the examples ship (`manifests/examples/sql-orders.yaml`).

#[path = "sql_step/fixture.rs"]
mod fixture;
#[path = "sql_step/host.rs"]
mod host;
#[path = "sql_step/real_node.rs"]
mod real_node;
