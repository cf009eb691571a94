"""What a test writer needs from mirrorlab besides a running `Lab`: the software flow table
(`mirrorlab.testing.flowsim`), which answers "where does this packet go?" from a topology and its
captures without root, Open vSwitch or Mininet."""
