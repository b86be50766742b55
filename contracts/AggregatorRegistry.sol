// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";

/// @title AggregatorRegistry
/// @notice Bonded aggregators for one ContributionMarket. Anyone registers with at least `minBond` (ETH);
/// each round of each task, the market draws that round's panel (and backup) from the members with the
/// round's seed, which no party can know before the round's reveal window closed. So no owner picks who
/// judges its task. The market records each panel member's vote (the hash of the result it posted) here
/// and, when a round is decided, has a member that stayed silent while it was its turn lose `penalty` of
/// its bond to the round's trainers (pull payments: `credits`), and one that voted against the decided
/// result lose it burned.
/// A member leaves the draw with `exit` (or when a penalty takes its bond below `minBond`) and takes its
/// bond back `exitDelay` seconds later; a member that left still answers for the rounds it was drawn for.
/// @dev Draws are evaluated "as of" the block that sealed the round: a member counts if it registered in
/// or before that block and had not left before it. Who counts is kept as a bitmap over the entries, one
/// bit per entry, with a checkpoint each block it changed in; a draw as of block B reads the bitmap as it
/// stood at B (two storage reads per 224 entries, a few more when the bitmap changed since B, however many
/// entries lie dead), so later registrations, exits and penalties cannot change a draw already made. Members are drawn
/// uniformly (one minimum bond buys one ticket): sybils need a bond each, and lose it when silent or outvoted.
contract AggregatorRegistry is ReentrancyGuard {
    /// @notice Most entries the list can hold at once (a withdrawn bond's entry is taken by the next registration).
    uint256 public constant MAX_MEMBERS = 1024;
    /// @notice Largest panel a draw returns.
    uint256 public constant MAX_DRAW = 16;

    /// @notice The only contract that may draw votes and penalties.
    address public immutable market;
    /// @notice Least bond (wei) to be drawn.
    uint256 public immutable minBond;
    /// @notice Wei a member loses per offence (silent when drawn, or voting against the decided result).
    uint256 public immutable penalty;
    /// @notice Seconds from leaving the draw until the bond can be withdrawn.
    uint256 public immutable exitDelay;

    struct Member {
        address account;
        uint32 since; // block of registration
        uint32 leftBlock; // block it left the draw (0: in it)
        uint32 leftTime; // timestamp it left the draw
        uint128 bond;
    }

    Member[] private _members;
    /// @dev Entries whose bond was withdrawn: the next registrations take them (so the list cannot be filled for good).
    uint256[] private _freeEntries;
    /// @dev Entries per bitmap word; the top 32 bits of a checkpoint hold the block it holds from.
    uint256 private constant WORD_BITS = 224;
    uint256 private constant WORD_MASK = (1 << WORD_BITS) - 1;
    uint256 private constant WORDS = (MAX_MEMBERS + WORD_BITS - 1) / WORD_BITS;
    /// @dev Who can be drawn, per word of WORD_BITS entries: checkpoints (fromBlock << 224 | bits), oldest first;
    /// bit i of word w is set as of a block when entry w * WORD_BITS + i could be drawn then (registered by that
    /// block, not left before it). A registration sets its bit from its block on, a departure clears it from the
    /// next block on.
    uint256[][WORDS] private _inDraw;
    /// @notice 1-based position of an account's latest entry (0: never registered).
    mapping(address account => uint256) public entryOf;
    /// @notice Members in the draw now.
    uint256 public activeCount;
    /// @notice Wei owed to trainers from penalties (withdraw with `withdrawCredit`).
    mapping(address account => uint256) public credits;
    /// @notice Wei of penalties taken in rounds that paid nobody to credit them to (an all-lost result, a
    /// fallback with no update proved available): out of circulation for good, never anyone's.
    uint256 public burned;
    mapping(uint256 taskId => mapping(uint256 round => mapping(address member => bytes32))) private _votes;
    mapping(uint256 taskId => mapping(uint256 round => mapping(address member => bytes32))) private _voteCommitments;

    event Registered(address indexed account, uint256 entry, uint256 bond);
    event BondAdded(address indexed account, uint256 amount, uint256 bond);
    event Left(address indexed account, uint256 bond);
    event BondWithdrawn(address indexed account, uint256 amount);
    event Voted(uint256 indexed taskId, uint256 indexed round, address indexed member, bytes32 result);
    event VoteCommitted(uint256 indexed taskId, uint256 indexed round, address indexed member, bytes32 commitment);
    event Penalised(uint256 indexed taskId, uint256 indexed round, address indexed member, uint256 amount);
    event Credited(uint256 indexed taskId, uint256 indexed round, address indexed account, uint256 amount);
    event PenaltyBurned(uint256 indexed taskId, uint256 indexed round, uint256 amount);
    event CreditWithdrawn(address indexed account, uint256 amount);

    // Each error's @notice is the one-line message the client shows for it.
    /// @notice only the market may do this ({caller} is not)
    error RegistryNotMarket(address caller);
    /// @notice a bond of at least {needed} wei is needed to be drawn (sent {sent})
    error RegistryBondTooLow(uint256 needed, uint256 sent);
    /// @notice the registry is full
    error RegistryFull();
    /// @notice {account} is not a registered aggregator
    error RegistryNotMember(address account);
    /// @notice {account} has already left the draw
    error RegistryAlreadyLeft(address account);
    /// @notice {account} is still in the draw: leave it first (`market aggregator exit`)
    error RegistryStillIn(address account);
    /// @notice the bond is locked until unix time {until} (the registry's exit delay after leaving the draw)
    error RegistryExitPending(uint256 until);
    /// @notice nothing to withdraw
    error RegistryNothingToWithdraw();
    /// @notice {member} has already posted its result for this round
    error RegistryAlreadyVoted(address member);
    /// @notice {member} has already committed to its result for this round
    error RegistryAlreadyCommitted(address member);
    /// @notice {member} did not commit to this result before posting it (every drawn member commits first: `commitVote`)
    error RegistryVoteNotCommitted(address member);
    /// @notice the round's results are taken once every drawn member has committed to one, or once commitments closed
    error RegistryCommitsOpen();
    /// @notice bad registry configuration (market, least bond, penalty)
    error RegistryBadConfig();

    /// @param market_ the market this registry serves (its address is known before it is deployed)
    /// @param minBond_ least bond to be drawn (wei, > 0)
    /// @param penalty_ wei lost per offence (> 0, at most `minBond_`)
    /// @param exitDelay_ seconds between leaving the draw and withdrawing the bond
    constructor(address market_, uint256 minBond_, uint256 penalty_, uint256 exitDelay_) {
        if (market_ == address(0) || minBond_ == 0 || penalty_ == 0 || penalty_ > minBond_ || minBond_ > type(uint128).max) {
            revert RegistryBadConfig();
        }
        market = market_;
        minBond = minBond_;
        penalty = penalty_;
        exitDelay = exitDelay_;
    }

    modifier onlyMarket() {
        if (msg.sender != market) revert RegistryNotMarket(msg.sender);
        _;
    }

    // ------------------------------------------------------------ members

    /// @notice Join the draw with `msg.value` as bond (at least `minBond`), or add to the bond of a member
    /// still in the draw. A member that left registers again (as a new entry) once its bond is withdrawn.
    function register() external payable nonReentrant {
        uint256 entry = entryOf[msg.sender];
        if (entry != 0) {
            Member storage m = _members[entry - 1];
            if (m.leftBlock == 0) {
                m.bond += uint128(msg.value);
                emit BondAdded(msg.sender, msg.value, m.bond);
                return;
            }
            revert RegistryExitPending(uint256(m.leftTime) + exitDelay); // left, bond not withdrawn yet
        }
        if (msg.value < minBond || msg.value > type(uint128).max) revert RegistryBondTooLow(minBond, msg.value);
        Member memory fresh = Member(msg.sender, uint32(block.number), 0, 0, uint128(msg.value));
        uint256 index;
        if (_freeEntries.length != 0) {
            // a withdrawn entry: every round it could be drawn for is over (rounds last at most half the exit
            // delay), and registered now it counts for no draw made before this block
            index = _freeEntries[_freeEntries.length - 1];
            _freeEntries.pop();
            _members[index] = fresh;
        } else {
            if (_members.length >= MAX_MEMBERS) revert RegistryFull();
            index = _members.length;
            _members.push(fresh);
        }
        _mark(index, true, block.number);
        entryOf[msg.sender] = index + 1;
        activeCount += 1;
        emit Registered(msg.sender, index + 1, msg.value);
    }

    /// @notice Leave the draw (rounds already drawn still count); the bond can be withdrawn `exitDelay` later.
    function exit() external {
        Member storage m = _entry(msg.sender);
        if (m.leftBlock != 0) revert RegistryAlreadyLeft(msg.sender);
        _leave(m);
    }

    /// @notice Take the bond back, `exitDelay` seconds after leaving the draw (and free the entry: with a bond
    /// penalised to nothing this is what lets the account register again).
    function withdrawBond() external nonReentrant {
        Member storage m = _entry(msg.sender);
        if (m.leftBlock == 0) revert RegistryStillIn(msg.sender);
        uint256 until = uint256(m.leftTime) + exitDelay;
        if (block.timestamp < until) revert RegistryExitPending(until);
        uint256 amount = m.bond;
        m.bond = 0;
        uint256 entry = entryOf[msg.sender];
        entryOf[msg.sender] = 0;
        _freeEntries.push(entry - 1); // also with nothing left to take (penalised to 0): the entry is freed all the same
        emit BondWithdrawn(msg.sender, amount);
        if (amount != 0) Address.sendValue(payable(msg.sender), amount);
    }

    /// @notice Withdraw what penalties credited to the caller.
    function withdrawCredit() external nonReentrant {
        uint256 amount = credits[msg.sender];
        if (amount == 0) revert RegistryNothingToWithdraw();
        credits[msg.sender] = 0;
        emit CreditWithdrawn(msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    // -------------------------------------------------------------- views

    /// @notice Entries ever registered (members that left included).
    function memberCount() external view returns (uint256) {
        return _members.length;
    }

    /// @notice One entry: (account, registration block, block it left (0: in the draw), bond).
    function memberAt(uint256 index) external view returns (address, uint256, uint256, uint256) {
        Member storage m = _members[index];
        return (m.account, m.since, m.leftBlock, m.bond);
    }

    /// @notice True while `account` is in the draw.
    function isActive(address account) public view returns (bool) {
        uint256 entry = entryOf[account];
        return entry != 0 && !_left(_members[entry - 1]);
    }

    /// @notice The result hash `member` voted for in a round (0: none).
    function voteOf(uint256 taskId, uint256 round, address member) external view returns (bytes32) {
        return _votes[taskId][round][member];
    }

    /// @notice The commitment `member` made to its result in a round (0: none): keccak256(abi.encode(result, member)).
    function voteCommitmentOf(uint256 taskId, uint256 round, address member) external view returns (bytes32) {
        return _voteCommitments[taskId][round][member];
    }

    /// @notice Draw up to `k` distinct members as of block `atBlock` with `seed`, never `exclude`: each seat is
    /// the r-th (r = keccak256(seed, try) mod how many are left) of the members that could be drawn at `atBlock`
    /// (registered by then, not left before it) and are not taken yet, so every such member is equally likely,
    /// and the cost does not depend on how many entries lie dead. Fewer than `k` come back when fewer qualify.
    /// Only as of a block whose rounds can still run (less than the exit delay ago): an entry withdrawn and
    /// taken by another account since is skipped, so a draw as of an older block may differ, and cost one
    /// read per such entry (an attacker pass: 7M gas after 1,000 blocks of churn with an exit delay of 1 s).
    function draw(bytes32 seed, uint256 atBlock, uint256 k, address exclude)
        public
        view
        returns (address[] memory picked)
    {
        if (k > MAX_DRAW) k = MAX_DRAW;
        uint256[WORDS] memory bits;
        uint256 left = 0;
        uint256 used = (_members.length + WORD_BITS - 1) / WORD_BITS; // the list never shrinks: no entry beyond
        for (uint256 w = 0; w < used; ++w) {
            bits[w] = _bitsAt(_inDraw[w], atBlock);
            left += _popcount(bits[w]);
        }
        picked = new address[](k);
        uint256 got = 0;
        for (uint256 tries = 0; got < k && left != 0; ++tries) {
            uint256 r = uint256(keccak256(abi.encode(seed, tries))) % left;
            uint256 w = 0;
            for (uint256 c = _popcount(bits[0]); r >= c; c = _popcount(bits[w])) {
                r -= c;
                ++w;
            }
            uint256 i = _select(bits[w], r);
            bits[w] &= ~(1 << i);
            --left;
            Member storage m = _members[w * WORD_BITS + i];
            // the owner never judges its own task; an entry taken over since `atBlock` is not the member it held then
            if (m.account == exclude || m.since > atBlock || _taken(picked, got, m.account)) continue;
            picked[got++] = m.account;
        }
        assembly ("memory-safe") {
            mstore(picked, got)
        }
    }

    /// @notice How many of `panel` (a round's drawn members) voted for `result`.
    function tally(uint256 taskId, uint256 round, address[] calldata panel, bytes32 result)
        external
        view
        returns (uint256 count)
    {
        for (uint256 i = 0; i < panel.length; ++i) {
            if (_votes[taskId][round][panel[i]] == result) ++count;
        }
    }

    /// @notice The members of `panel` that voted for `result` in a round (`result` 0: those that cast no vote).
    function votersFor(uint256 taskId, uint256 round, address[] calldata panel, bytes32 result)
        external
        view
        returns (address[] memory out)
    {
        out = new address[](panel.length);
        uint256 n = 0;
        for (uint256 i = 0; i < panel.length; ++i) {
            if (_votes[taskId][round][panel[i]] == result) out[n++] = panel[i];
        }
        assembly ("memory-safe") {
            mstore(out, n)
        }
    }

    /// @notice Who of a round's drawn `panel` (its first `k` the panel proper, then the backup) answers for
    /// the round's outcome: members that voted for a result other than `decided` (when one was decided), drawn
    /// members that committed to no result (`commitVote`) when one was decided, and, when `late` (the panel's
    /// window is over), panel members that did not vote, and, when nothing was decided (`decided` zero), a
    /// silent backup too. `voter` is taken as voting for `decided` (its vote decides it
    /// and is recorded after).
    function offenders(
        uint256 taskId,
        uint256 round,
        address[] calldata panel,
        uint256 k,
        bytes32 decided,
        bool late,
        address voter
    ) external view returns (address[] memory out) {
        out = new address[](panel.length);
        uint256 n = 0;
        for (uint256 i = 0; i < panel.length; ++i) {
            bytes32 v = panel[i] == voter ? decided : _votes[taskId][round][panel[i]];
            if (_offends(taskId, round, panel[i], v, decided, late && (i < k || decided == bytes32(0)))) {
                out[n++] = panel[i];
            }
        }
        assembly ("memory-safe") {
            mstore(out, n)
        }
    }

    // ------------------------------------------------------------- market

    /// @notice Record `member`'s commitment to the result it will post in a round (once: it cannot change it).
    function commitVote(uint256 taskId, uint256 round, address member, bytes32 commitment) external onlyMarket {
        if (_voteCommitments[taskId][round][member] != bytes32(0)) revert RegistryAlreadyCommitted(member);
        _voteCommitments[taskId][round][member] = commitment;
        emit VoteCommitted(taskId, round, member, commitment);
    }

    /// @notice Record `member`'s vote for result `result` in a round. The member must have committed to exactly
    /// this result, and votes are taken only once every one of the round's `drawn` members (the panel and its
    /// backup) has committed, or once the market says they are `open` (commitments closed a while ago): no
    /// member sees another's result before committing to its own.
    function vote(uint256 taskId, uint256 round, address member, bytes32 result, address[] calldata drawn, bool open)
        external
        onlyMarket
    {
        if (_votes[taskId][round][member] != bytes32(0)) revert RegistryAlreadyVoted(member);
        mapping(address => bytes32) storage committed = _voteCommitments[taskId][round];
        if (committed[member] != keccak256(abi.encode(result, member))) revert RegistryVoteNotCommitted(member);
        for (uint256 i = 0; i < drawn.length && !open; ++i) {
            if (committed[drawn[i]] == bytes32(0)) revert RegistryCommitsOpen();
        }
        _votes[taskId][round][member] = result;
        emit Voted(taskId, round, member, result);
    }

    /// @notice Take `penalty` (at most the bond) from each offender. A silent member's (one that cast no vote) is
    /// split equally among `to` (cumulative rounding: not a wei is lost): its silence held the round's trainers
    /// up. A dissenter's (one that voted for another result) is burned (`burned`): a dissent costs nobody
    /// anything, and credited it would go to whoever the decided result pays, which rewards whoever makes an
    /// honest member dissent (a trainer serving its update to some members only) or outvotes it (a colluding
    /// majority paying its own trainers). With nobody in `to`, every penalty is burned: an offender never
    /// escapes its penalty because the round paid nobody, and no party that decides a round can collect it.
    /// A member left with less than `minBond` leaves the draw.
    function penalise(uint256 taskId, uint256 round, address[] calldata members, address[] calldata to)
        external
        onlyMarket
    {
        uint256 taken = 0;
        uint256 burn = 0;
        for (uint256 i = 0; i < members.length; ++i) {
            uint256 entry = entryOf[members[i]];
            if (entry == 0) continue;
            Member storage m = _members[entry - 1];
            uint256 amount = m.bond < penalty ? m.bond : penalty;
            if (amount == 0) continue;
            m.bond -= uint128(amount);
            if (to.length == 0 || _votes[taskId][round][members[i]] != bytes32(0)) burn += amount;
            else taken += amount;
            emit Penalised(taskId, round, members[i], amount);
            if (m.leftBlock == 0 && m.bond < minBond) _leave(m);
        }
        if (burn != 0) {
            burned += burn;
            emit PenaltyBurned(taskId, round, burn);
        }
        uint256 paid = 0;
        for (uint256 j = 1; j <= to.length && taken != 0; ++j) {
            uint256 amount = (taken * j) / to.length - paid;
            if (amount == 0) continue;
            paid += amount;
            credits[to[j - 1]] += amount;
            emit Credited(taskId, round, to[j - 1], amount);
        }
    }

    // ----------------------------------------------------------- internal

    /// @dev Whether a drawn `member` whose vote is `v` (0: none) answers for a round decided for `decided` (0: none):
    /// it voted otherwise; or it did not vote and `silenceCounts` (the panel's window is over), or a result was
    /// decided while it had committed to none (the votes were taken without it, so its commitments had closed: it
    /// held every vote back to seven eighths of the window).
    function _offends(uint256 taskId, uint256 round, address member, bytes32 v, bytes32 decided, bool silenceCounts)
        private
        view
        returns (bool)
    {
        if (v != bytes32(0)) return decided != bytes32(0) && v != decided;
        return silenceCounts || (decided != bytes32(0) && _voteCommitments[taskId][round][member] == bytes32(0));
    }

    /// @dev Set (`on`) or clear entry `index`'s bit in the draw from block `fromBlock` on (this block or the
    /// next): every checkpoint from `fromBlock` on takes the change (at most this block's and the next's), and
    /// one at `fromBlock` is added if there is none.
    function _mark(uint256 index, bool on, uint256 fromBlock) private {
        uint256[] storage h = _inDraw[index / WORD_BITS];
        uint256 bit = 1 << (index % WORD_BITS);
        uint256 n = h.length;
        uint256 i = n;
        while (i > 0 && h[i - 1] >> WORD_BITS >= fromBlock) {
            --i;
            h[i] = on ? h[i] | bit : h[i] & ~bit;
        }
        // h[i] (if any) is from `fromBlock` or later: not later means there is one at `fromBlock` already
        if (i < n && h[i] >> WORD_BITS <= fromBlock) return;
        uint256 before = i == 0 ? 0 : h[i - 1] & WORD_MASK;
        uint256 cp = (fromBlock << WORD_BITS) | (on ? before | bit : before & ~bit);
        if (i == n) {
            h.push(cp);
            return;
        }
        h.push(h[n - 1]); // a checkpoint of the next block is there already: this block's goes before it
        for (uint256 j = n - 1; j > i; --j) {
            h[j] = h[j - 1];
        }
        h[i] = cp;
    }

    /// @dev The bits of one word as of block `atBlock`: its last checkpoint from `atBlock` or before. Searched
    /// from the newest back, by doubling steps then bisection, so the reads grow with the log of the changes
    /// since `atBlock`, not of the word's whole history (an attacker pass padded the history to make a draw
    /// after a few changes read ~20 checkpoints per word).
    function _bitsAt(uint256[] storage h, uint256 atBlock) private view returns (uint256) {
        uint256 n = h.length;
        if (n == 0) return 0;
        if (h[n - 1] >> WORD_BITS <= atBlock) return h[n - 1] & WORD_MASK; // nearly always: no change since
        // the answer's index lies in [lo, hi): h[hi] is after `atBlock`; gallop back to find an h[lo] that is not
        uint256 hi = n - 1;
        uint256 step = 1;
        uint256 lo;
        while (true) {
            if (hi < step) {
                lo = 0;
                if (h[0] >> WORD_BITS > atBlock) return 0; // before the word's first checkpoint: nobody
                break;
            }
            lo = hi - step;
            if (h[lo] >> WORD_BITS <= atBlock) break;
            hi = lo;
            step <<= 1;
        }
        // h[lo] is at or before `atBlock`, h[hi] after: the last one at or before lies in [lo, hi)
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            if (h[mid] >> WORD_BITS <= atBlock) lo = mid;
            else hi = mid;
        }
        return h[lo] & WORD_MASK;
    }

    /// @dev Set bits of `x` (at most 255 of them).
    function _popcount(uint256 x) private pure returns (uint256) {
        unchecked {
            x -= (x >> 1) & 0x5555555555555555555555555555555555555555555555555555555555555555;
            x = (x & 0x3333333333333333333333333333333333333333333333333333333333333333)
                + ((x >> 2) & 0x3333333333333333333333333333333333333333333333333333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            return (x * 0x0101010101010101010101010101010101010101010101010101010101010101) >> 248;
        }
    }

    /// @dev Position of the `r`-th (from 0) set bit of `x` (which has more than `r`), by halving.
    function _select(uint256 x, uint256 r) private pure returns (uint256 pos) {
        for (uint256 width = 128; width != 0; width >>= 1) {
            uint256 low = x & ((1 << width) - 1);
            uint256 c = _popcount(low);
            if (r >= c) {
                r -= c;
                x >>= width;
                pos += width;
            } else {
                x = low;
            }
        }
    }

    function _entry(address account) private view returns (Member storage) {
        uint256 entry = entryOf[account];
        if (entry == 0) revert RegistryNotMember(account);
        return _members[entry - 1];
    }

    function _left(Member storage m) private view returns (bool) {
        return m.leftBlock != 0;
    }

    function _leave(Member storage m) private {
        _mark(entryOf[m.account] - 1, false, block.number + 1); // still drawn as of this block, not after
        m.leftBlock = uint32(block.number);
        m.leftTime = uint32(block.timestamp);
        activeCount -= 1;
        emit Left(m.account, m.bond);
    }

    function _taken(address[] memory picked, uint256 got, address account) private pure returns (bool) {
        for (uint256 i = 0; i < got; ++i) {
            if (picked[i] == account) return true;
        }
        return false;
    }
}
