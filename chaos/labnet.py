"""The chaos nemesis's network faults in the three-place lab (chaos/run.sh --lab): NetCut's cut and
heal, done with the lab's own link cuts (deploy/lab.sh cut/heal through Cluster.lab_cut).

The lab cuts the emulated WAN link between two sites (every byte and every new connection of
that pair held until the heal), so a cut here is between whole sites: partition_sites works as on
loopback; partition_node (one node from all the others, its site's other node included) has no
lab equivalent and is left out of a lab run, which says so (harness.LAB_UNAVAILABLE).
"""

from bcp_load import site_names


class LabNet:
    """Same interface as tests/integration/netcut.NetCut (cut, heal, cuts), for a lab Cluster."""

    def __init__(self, cluster):
        self.c = cluster
        self.cuts = []  # (site_a, site_b) of the links cut and not yet healed

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.cuts:
            self.heal()
        return False

    def site_of(self, group):
        """The site whose nodes are exactly group; ValueError when group is not one whole site."""
        sites = {self.c.nodes[n]["site"] for n in group}
        site = sites.pop() if len(sites) == 1 else None
        if site is None or sorted(site_names(self.c, site)) != sorted(group):
            raise ValueError("the lab cuts links between whole sites, not %s" % ",".join(group))
        return site

    def cut(self, group_a, group_b, ports="all"):
        """Cuts the link between the sites of group_a and group_b (each one whole site). A lab
        link carries raft and API traffic alike, so only ports="all" can be honoured."""
        if ports != "all":
            raise ValueError("a lab link cut holds raft and API alike: ports=%r" % ports)
        site_a, site_b = self.site_of(group_a), self.site_of(group_b)
        self.c.lab_cut(site_a, site_b)
        self.cuts.append((site_a, site_b))

    def heal(self):
        self.c.lab_heal()
        self.cuts = []
