//! The pipeline layout, natively.

use flowscope_model::QueueState;

use super::*;

fn edge(from: &str, to: &str, kind: &str) -> TopologyEdge {
    TopologyEdge {
        vhost: "/".into(),
        from: from.into(),
        to: to.into(),
        kind: kind.into(),
        exchange: Some("shop.dlx".into()),
        ..Default::default()
    }
}

fn shop() -> Topology {
    let queue = |name: &str, dlq: bool| QueueState {
        vhost: "/".into(),
        name: name.into(),
        is_dead_letter_queue: dlq,
        ..Default::default()
    };
    Topology {
        services: vec!["order".into(), "payment".into(), "shipping".into()],
        exchanges: vec![],
        queues: vec![
            queue("shipping.orders", false),
            queue("payment.orders", false),
            queue("payment.orders.dlq", true),
            queue("shipping.orders.dlq", true),
        ],
        edges: vec![
            TopologyEdge {
                messages: Some(500),
                ..edge("service:order", "exchange:shop.events", "publish")
            },
            TopologyEdge {
                messages: Some(500),
                ..edge("service:payment", "exchange:shop.events", "publish")
            },
            edge("exchange:shop.events", "queue:payment.orders", "binding"),
            edge("exchange:shop.events", "queue:shipping.orders", "binding"),
            edge("exchange:shop.dlx", "queue:payment.orders.dlq", "binding"),
            edge("queue:payment.orders", "service:payment", "consume"),
            edge("queue:shipping.orders", "service:shipping", "consume"),
            edge(
                "queue:payment.orders",
                "queue:payment.orders.dlq",
                "dead_letter",
            ),
            edge(
                "queue:shipping.orders",
                "queue:shipping.orders.dlq",
                "dead_letter",
            ),
        ],
    }
}

fn node<'a>(layout: &'a Layout, kind: NodeKind, id: &str) -> &'a Node {
    layout
        .nodes
        .iter()
        .find(|n| n.kind == kind && n.id == id)
        .unwrap_or_else(|| panic!("no {kind:?} {id}"))
}

fn hop(queue: &str, producer: &str, at: i64) -> flowscope_model::Hop {
    flowscope_model::Hop {
        queue: Some(queue.into()),
        producer: Some(producer.into()),
        published_unix_us: Some(at),
        ..Default::default()
    }
}

#[test]
fn the_flow_order_comes_from_the_hops_in_time_order() {
    let flow = FlowDetail {
        hops: vec![
            hop("shipping.orders", "payment", 30),
            hop("payment.orders", "order", 10),
            hop("order.outcomes", "shipping", 40),
        ],
        ..Default::default()
    };
    let order = FlowOrder::from_flows(&[flow.clone(), flow]);
    assert_eq!(order.queue("payment.orders"), Some(0.0));
    assert_eq!(order.queue("shipping.orders"), Some(1.0));
    assert_eq!(order.queue("order.outcomes"), Some(2.0));
    assert_eq!(order.publisher("order"), Some(0.0));
    assert_eq!(order.publisher("shipping"), Some(2.0));
}

#[test]
fn quiet_exchanges_and_their_queues_are_left_out() {
    let mut topology = shop();
    topology.queues.push(QueueState {
        vhost: "/".into(),
        name: "shop.control.payment".into(),
        ..Default::default()
    });
    topology.edges.extend([
        TopologyEdge {
            messages: Some(2),
            ..edge("service:flowscope", "exchange:shop.control", "publish")
        },
        edge(
            "exchange:shop.control",
            "queue:shop.control.payment",
            "binding",
        ),
        edge("queue:shop.control.payment", "service:payment", "consume"),
    ]);
    let (kept, hidden) = without_idle(&topology);
    assert_eq!(hidden, 1);
    assert!(
        kept.edges.iter().all(|e| e.from != "service:flowscope"),
        "its publisher too"
    );
    assert!(kept.queues.iter().all(|q| q.name != "shop.control.payment"));
    assert!(
        kept.edges
            .iter()
            .all(|e| !e.from.contains("control") && !e.to.contains("control"))
    );
    assert_eq!(
        kept.edges.len(),
        topology.edges.len() - 3,
        "the DLX binding is kept"
    );
    let quiet = Topology {
        edges: topology
            .edges
            .iter()
            .filter(|e| e.kind != "publish")
            .cloned()
            .collect(),
        ..topology
    };
    assert_eq!(
        without_idle(&quiet).1,
        0,
        "before any publish, everything shows"
    );
}

#[test]
fn columns_follow_the_messages_and_rows_the_flow_order() {
    let order = FlowOrder {
        queues: [("payment.orders", 0.0), ("shipping.orders", 2.0)]
            .map(|(s, r)| (s.to_owned(), r))
            .into(),
        publishers: [("order", 0.0), ("payment", 1.0)]
            .map(|(s, r)| (s.to_owned(), r))
            .into(),
    };
    let layout = layout(&shop(), &order);
    let publisher = node(&layout, NodeKind::Publisher, "service:payment");
    let exchange = node(&layout, NodeKind::Exchange, "exchange:shop.events");
    let payment_q = node(&layout, NodeKind::Queue, "queue:payment.orders");
    let shipping_q = node(&layout, NodeKind::Queue, "queue:shipping.orders");
    let payment = node(&layout, NodeKind::Consumer, "service:payment");
    let dlq = node(
        &layout,
        NodeKind::DeadLetterQueue,
        "queue:payment.orders.dlq",
    );
    assert!(publisher.x < exchange.x && exchange.x < payment_q.x);
    assert!(payment_q.x < payment.x && payment.x < dlq.x);
    assert!(
        payment_q.y < shipping_q.y,
        "payment comes first in the flows"
    );
    assert_eq!(payment.y, payment_q.y, "a consumer beside its queue");
    assert_eq!(dlq.y, payment_q.y, "a DLQ beside its source");
    assert_eq!(
        layout
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Exchange)
            .count(),
        1,
        "the dead-letter exchange is drawn as the dead-letter edge's label"
    );
    assert_eq!(layout.edges.len(), 8, "every edge but the DLX binding");
    let dead = layout
        .edges
        .iter()
        .find(|e| e.kind == "dead_letter")
        .unwrap();
    assert!(
        dead.path
            .starts_with(&format!("M{:.1},", payment_q.x + NODE_W))
    );
    let keys: BTreeSet<&str> = layout.nodes.iter().map(|n| n.key.as_str()).collect();
    assert_eq!(keys.len(), layout.nodes.len(), "node keys are unique");
}

#[test]
fn an_empty_topology_lays_out_to_nothing() {
    let layout = layout(&Topology::default(), &FlowOrder::default());
    assert!(layout.nodes.is_empty() && layout.edges.is_empty());
}

#[test]
fn consumers_that_share_a_row_are_pushed_apart() {
    let spread = spread(vec![("a", 10.0), ("b", 10.0), ("c", 200.0)]);
    assert_eq!(spread, [("a", 10.0), ("b", 10.0 + ROW_STEP), ("c", 200.0)]);
}

#[test]
fn counts_and_rates_change_the_style_but_not_the_structure() {
    let before = shop();
    let mut after = shop();
    for e in &mut after.edges {
        e.messages = e.messages.map(|n| n + 250);
        if e.kind == "consume" {
            e.rate = Some(12.0);
            e.queue_wait_ms = Some(40.0);
        }
    }
    after.queues[0].ready = 42;
    after.queues[0].publish_rate = 3.0;
    assert_eq!(structure_of(&before), structure_of(&after));
    assert_ne!(edge_styles(&before), edge_styles(&after));
    // The layout of the structure is the layout of the topology, styles aside.
    let order = FlowOrder::default();
    let full = layout(&after, &order);
    let bare = layout(&structure_of(&after), &order);
    assert_eq!(full.nodes, bare.nodes);
    let styles = edge_styles(&after);
    for (f, b) in full.edges.iter().zip(&bare.edges) {
        assert_eq!((&f.key, &f.path, &f.source), (&b.key, &b.path, &b.source));
        let live = styles.get(&f.source).unwrap();
        assert_eq!((&live.label, live.width), (&f.label, f.width));
    }
    let consume = styles
        .get("/|queue:payment.orders>service:payment>consume")
        .unwrap();
    assert_eq!(consume.width, 1.5 + 12.0 / 4.0);
    assert!(consume.label.contains("wait"), "{}", consume.label);
}

#[test]
fn a_new_queue_changes_the_structure() {
    let mut grown = shop();
    grown.queues.push(QueueState {
        vhost: "/".into(),
        name: "audit.orders".into(),
        ..Default::default()
    });
    assert_ne!(structure_of(&shop()), structure_of(&grown));
}
