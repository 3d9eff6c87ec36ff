//! 12-month total cost of ownership at the monthly query volumes of configs/pricing.yaml.
//!
//! - API: every query costs its tokens at the provider's prices (input, cached input,
//!   output, long-context tier), measured on this evaluation's prompts and answers.
//! - Local: the GPU-hours the volume needs at the measured compute time per query, at the
//!   GPU's hourly price, billed per `local_billing` (whole GPUs around the clock, or only the
//!   hours used), plus the one-off training cost (training wall hours × hourly price) for
//!   LoRA conditions.

use super::summary::{Tco, TcoPoint};
use crate::config::{LocalBilling, PricingConfig};

/// Hours in an average month (8760 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What one query costs, and how it was measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Serving {
    /// Mean USD per query at token prices.
    Api { per_query_usd: f64 },
    /// Mean compute seconds per query on one GPU.
    Local { compute_s_per_query: f64 },
}

/// The TCO curve. `training_hours` is the one-off training time (LoRA conditions).
pub fn tco(
    serving: Serving,
    training_hours: Option<f64>,
    gpu: &str,
    pricing: &PricingConfig,
) -> Option<Tco> {
    let hourly = pricing.gpu.get(gpu).map(|g| g.hourly_usd);
    let training_usd = match (training_hours, hourly) {
        (Some(h), Some(p)) => h * p,
        _ => 0.0,
    };
    match serving {
        Serving::Api { per_query_usd } => Some(Tco {
            basis: "api".into(),
            per_query_usd,
            training_usd,
            training_hours,
            throughput_qps: None,
            points: pricing
                .monthly_queries
                .iter()
                .map(|&q| {
                    let monthly = q as f64 * per_query_usd;
                    TcoPoint {
                        monthly_queries: q,
                        monthly_usd: monthly,
                        twelve_month_usd: 12.0 * monthly + training_usd,
                        gpu_hours_per_month: None,
                    }
                })
                .collect(),
        }),
        Serving::Local {
            compute_s_per_query,
        } => {
            let hourly = hourly?;
            if !(compute_s_per_query.is_finite() && compute_s_per_query > 0.0) {
                return None;
            }
            let points = pricing
                .monthly_queries
                .iter()
                .map(|&q| {
                    let hours = q as f64 * compute_s_per_query / 3600.0;
                    let monthly = match pricing.local_billing {
                        LocalBilling::PerHour => hours * hourly,
                        LocalBilling::AlwaysOn => {
                            let gpus = (hours / HOURS_PER_MONTH).ceil().max(1.0);
                            gpus * HOURS_PER_MONTH * hourly
                        }
                    };
                    TcoPoint {
                        monthly_queries: q,
                        monthly_usd: monthly,
                        twelve_month_usd: 12.0 * monthly + training_usd,
                        gpu_hours_per_month: Some(hours),
                    }
                })
                .collect();
            Some(Tco {
                basis: format!(
                    "gpu:{gpu} ({})",
                    match pricing.local_billing {
                        LocalBilling::AlwaysOn => "always on",
                        LocalBilling::PerHour => "per hour used",
                    }
                ),
                per_query_usd: compute_s_per_query / 3600.0 * hourly,
                training_usd,
                training_hours,
                throughput_qps: Some(1.0 / compute_s_per_query),
                points,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GpuPrice;
    use std::collections::BTreeMap;

    fn pricing(billing: LocalBilling) -> PricingConfig {
        PricingConfig {
            currency: "USD".into(),
            as_of: "2026-01-01".into(),
            api: BTreeMap::new(),
            gpu: BTreeMap::from([("h100".to_string(), GpuPrice { hourly_usd: 2.0 })]),
            default_gpu: "h100".into(),
            monthly_queries: vec![1000, 10_000_000],
            local_billing: billing,
        }
    }

    #[test]
    fn api_cost_is_linear_in_volume_plus_nothing_up_front() {
        let t = tco(
            Serving::Api {
                per_query_usd: 0.001,
            },
            None,
            "h100",
            &pricing(LocalBilling::AlwaysOn),
        )
        .unwrap();
        assert_eq!(t.points[0].monthly_usd, 1.0);
        assert_eq!(t.points[0].twelve_month_usd, 12.0);
        assert!((t.points[1].twelve_month_usd - 120_000.0).abs() < 1e-6);
    }

    #[test]
    fn always_on_rents_at_least_one_gpu_and_more_when_needed() {
        // 0.5 s per query: 1000 queries need 0.139 h; 10 M need 1389 h = 2 GPUs.
        let t = tco(
            Serving::Local {
                compute_s_per_query: 0.5,
            },
            Some(3.0),
            "h100",
            &pricing(LocalBilling::AlwaysOn),
        )
        .unwrap();
        assert_eq!(t.training_usd, 6.0);
        assert_eq!(t.points[0].monthly_usd, 730.0 * 2.0);
        assert_eq!(t.points[0].twelve_month_usd, 12.0 * 1460.0 + 6.0);
        assert_eq!(t.points[1].monthly_usd, 2.0 * 730.0 * 2.0);
        assert_eq!(t.throughput_qps, Some(2.0));
        let hours = t.points[1].gpu_hours_per_month.unwrap();
        assert!((hours - 10_000_000.0 * 0.5 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn per_hour_pays_only_the_hours_used() {
        let t = tco(
            Serving::Local {
                compute_s_per_query: 0.36,
            },
            None,
            "h100",
            &pricing(LocalBilling::PerHour),
        )
        .unwrap();
        // 1000 × 0.36 s = 0.1 h × $2.
        assert!((t.points[0].monthly_usd - 0.2).abs() < 1e-12);
        assert!((t.per_query_usd - 0.0002).abs() < 1e-15);
    }

    #[test]
    fn unknown_gpu_or_no_measurement_gives_no_local_tco() {
        let p = pricing(LocalBilling::PerHour);
        let s = Serving::Local {
            compute_s_per_query: 0.1,
        };
        assert!(tco(s, None, "nope", &p).is_none());
        let zero = Serving::Local {
            compute_s_per_query: 0.0,
        };
        assert!(tco(zero, None, "h100", &p).is_none());
    }
}
