"""Resource and license accounting, cluster status, autoscaler configs (issue 4)."""
