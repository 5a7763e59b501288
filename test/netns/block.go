package netns

import (
	"fmt"
	"net/netip"
)

// Addressing. The dedicated range 10.213.0.0/16 is cut into 8,192 blocks of
// /29. Block b owns 10.213.0.0 + 8*b and these addresses in it:
//
//	.0      network address, unused
//	.1      host end of the veth (HostIP)
//	.2      inside end of the veth (InsideIP)
//	.3-.6   extra inside addresses, handed out by AddInsideAddr
//	.7      broadcast, unused
//
// A block is claimed by creating its host-side veth, whose name is derived
// from the block alone (never from Config), so the kernel's refusal of a
// duplicate link name is the lock shared by every process on the machine.
const (
	rangeFirst  = 10  // first octet of 10.213.0.0/16
	rangeSecond = 213 // second octet of 10.213.0.0/16
	rangeBits   = 16  // prefix length of the dedicated range
	blockBits   = 29  // prefix length of one block
	numBlocks   = 1 << (blockBits - rangeBits)

	hostOffset   = 1 // HostIP within a block
	insideOffset = 2 // InsideIP within a block
	extraOffset  = 3 // first extra inside address within a block
	maxExtra     = 4 // extra inside addresses per block: .3 to .6
)

// block is the index of one /29 in 10.213.0.0/16, in [0, numBlocks).
type block uint16

// prefix is the block's subnet, for example 10.213.1.8/29 for block 33.
func (b block) prefix() netip.Prefix {
	return netip.PrefixFrom(b.addr(0), blockBits)
}

// addr is the address offset bytes into the block.
func (b block) addr(offset int) netip.Addr {
	v := uint32(b)<<(32-blockBits) + uint32(offset)
	return netip.AddrFrom4([4]byte{rangeFirst, rangeSecond, byte(v >> 8), byte(v)})
}

func (b block) hostIP() netip.Addr   { return b.addr(hostOffset) }
func (b block) insideIP() netip.Addr { return b.addr(insideOffset) }

// extraIP is the i-th extra inside address, i in [0, maxExtra).
func (b block) extraIP(i int) netip.Addr { return b.addr(extraOffset + i) }

// hostLink names the host end of the veth; creating it claims the block. At
// most 15 characters (IFNAMSIZ - 1).
func (b block) hostLink() string { return fmt.Sprintf("tth-%04x", uint16(b)) }

// insideLink names the inside end of the veth.
func (b block) insideLink() string { return fmt.Sprintf("tti-%04x", uint16(b)) }

// nsName names the network namespace, as listed by `ip netns list`.
func (b block) nsName(prefix string) string { return fmt.Sprintf("%s-%04x", prefix, uint16(b)) }

// validPrefix reports whether p can start a namespace name: 1 to 32 of
// [A-Za-z0-9_-], so the name is a plain file name under /run/netns.
func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > 32 {
		return false
	}
	for _, c := range p {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
