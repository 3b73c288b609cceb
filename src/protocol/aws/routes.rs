//! The AWS IoT Jobs topics for the broker's authorization (`access::rules`): a thing publishes
//! its requests (`get`, `start-next`, `{jobId}/get`, `{jobId}/update`) and subscribes to
//! `notify`, `notify-next` and its requests' `accepted` / `rejected` answers. The SDKs subscribe
//! to `<request>/+` for the answer, which the `Answer` part allows in that one place; a job id
//! level takes any valid segment (`$next` included). Other `$aws/things/{t}/…` topics (shadows,
//! tunnels) are not the Jobs API's and are refused.

use crate::access::rules::Part::{Answer, JobId, Lit, Name};
use crate::access::rules::TopicRoute;

/// Every topic of the dialect.
pub const ROUTES: &[TopicRoute] = &[
    TopicRoute::up(&[Lit("$aws"), Lit("things"), Name, Lit("jobs"), Lit("get")]),
    TopicRoute::up(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        Lit("start-next"),
    ]),
    TopicRoute::up(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        JobId,
        Lit("get"),
    ]),
    TopicRoute::up(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        JobId,
        Lit("update"),
    ]),
    TopicRoute::down(&[Lit("$aws"), Lit("things"), Name, Lit("jobs"), Lit("notify")]),
    TopicRoute::down(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        Lit("notify-next"),
    ]),
    TopicRoute::down(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        Lit("get"),
        Answer,
    ]),
    TopicRoute::down(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        Lit("start-next"),
        Answer,
    ]),
    TopicRoute::down(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        JobId,
        Lit("get"),
        Answer,
    ]),
    TopicRoute::down(&[
        Lit("$aws"),
        Lit("things"),
        Name,
        Lit("jobs"),
        JobId,
        Lit("update"),
        Answer,
    ]),
];
