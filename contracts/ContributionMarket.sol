// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IRoundVerifier} from "./IRoundVerifier.sol";

/// @title ContributionMarket
/// @notice Escrow for collaborative training tasks (Proof-of-Contribution design).
/// An owner escrows a reward (ETH or an ERC-20) split into equal per-round pools. Joined
/// trainers commit the CID of each round's update until the round's submission deadline (or
/// until `maxTrainers` of them have submitted); the task's aggregator then posts the round
/// result with basis points per submitter; the contract credits `pool * bps / 10_000`
/// (rounded down; the remainder is refunded to the owner) to pull-payment balances. If the
/// aggregator misses its deadline anyone may settle the round by an equal split among its
/// submitters; a round nobody submitted to is refunded to the owner. No path leaves funds
/// locked: every pool ends credited to trainers or refunded to the owner, and both withdraw.
/// @dev CIDs are stored as the 32-byte sha2-256 digest of a CIDv1 raw CID. Update CIDs and
/// commitments live in events; the contract keeps a running keccak digest over
/// (join index, cid, commitment) of every submission (seeded with the task id, chained across
/// rounds, its value at each settlement emitted; a verifier gets it too), which
/// readers use to check the events they read. Submitters of a round are, in that order,
/// the joined trainers in join order that submitted; `bps` follows that order.
/// The guard is OpenZeppelin's storage `ReentrancyGuard`, not the transient one: the contract
/// is built for `evmVersion` shanghai so one artifact runs on every node (Anvil, the in-process
/// EVM, Ganache 7, pre-Cancun chains); it costs ~2,000 gas per guarded call (bench/gas.py).
contract ContributionMarket is ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Basis points in a whole round pool.
    uint256 public constant BPS = 10_000;
    /// @notice Most trainers a task can admit.
    uint256 public constant MAX_TRAINERS = 256;
    /// @notice Most rounds a task can have.
    uint256 public constant MAX_ROUNDS = 10_000;

    /// @notice How a round was settled.
    uint8 public constant SETTLED_BY_RESULT = 1;
    uint8 public constant SETTLED_BY_FALLBACK = 2;
    uint8 public constant SETTLED_BY_REFUND = 3;

    struct TaskParams {
        bytes32 specCid;
        bytes32 initialModelCid;
        bytes32 validationCommitment;
        address aggregator;
        address verifier;
        uint32 rounds;
        uint32 submitWindow;
        uint32 resultWindow;
        uint32 maxTrainers;
    }

    /// @dev Packed so that a submission and a settlement touch as few slots as possible; a
    /// settlement writes no slot that is zero (the submission count is tagged with its round
    /// instead of being reset, the digest chains on across rounds). Block numbers and times fit
    /// 32 bits until the year 2106.
    struct Task {
        address owner;
        uint32 createdBlock;
        uint32 submittedCount; // submissions in round `countRound`
        uint32 countRound;
        address aggregator;
        uint32 rounds;
        uint32 currentRound; // == rounds once finished
        uint32 roundOpenedAt;
        address token; // address(0): ETH
        uint32 submitWindow;
        uint32 resultWindow;
        uint32 maxTrainers;
        address verifier; // address(0): no proof required
        uint32 trainerCount;
        // reward/refunded and escrow/credited share slots that are non-zero from creation on,
        // so settling the first round rewrites warm slots instead of filling fresh ones.
        uint128 reward;
        uint128 refunded; // to the owner, all rounds
        uint128 escrow; // not yet settled
        uint128 credited; // to trainers, all rounds
        uint128 refundsWithdrawn;
        bytes32 submissionsDigest; // running digest over every submission of the task
        bytes32 latestModelCid; // the model the current round trains from
        bytes32 specCid;
        bytes32 validationCommitment;
    }

    uint256 private _taskCount;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(address trainer => uint256 index)) private _trainerIndex; // 1-based
    mapping(uint256 taskId => mapping(uint256 index => address trainer)) private _trainerAt;
    /// @dev last round each trainer submitted to, plus one: eight 32-bit tags per word, by join index
    mapping(uint256 taskId => mapping(uint256 word => uint256 tags)) private _submittedTags;
    mapping(address token => mapping(address account => uint256)) private _owed;

    /// @notice A task was created and its reward escrowed.
    event TaskCreated(
        uint256 indexed taskId,
        address indexed owner,
        address indexed aggregator,
        address token,
        uint256 reward,
        uint32 rounds,
        bytes32 specCid
    );
    /// @notice A trainer joined a task; `index` is its 1-based join order.
    event TrainerJoined(uint256 indexed taskId, address indexed trainer, uint256 index);
    /// @notice A trainer committed its update for a round.
    event UpdateSubmitted(
        uint256 indexed taskId, uint256 indexed round, address indexed trainer, bytes32 cid, bytes32 commitment
    );
    /// @notice A trainer was credited for a round.
    event TrainerCredited(uint256 indexed taskId, uint256 indexed round, address indexed trainer, uint256 amount);
    /// @notice A round was settled (`mode` 1 result, 2 fallback split, 3 refund); `submissionsDigest`
    /// is the final running digest of its submissions; the CIDs are zero unless `mode` is 1.
    event RoundSettled(
        uint256 indexed taskId,
        uint256 indexed round,
        uint8 mode,
        uint256 credited,
        uint256 refunded,
        bytes32 submissionsDigest,
        bytes32 modelCid,
        bytes32 receiptCid
    );
    /// @notice The owner reclaimed every pool nobody can earn any more.
    event TaskReclaimed(uint256 indexed taskId, uint256 amount);
    /// @notice Every round of the task is settled.
    event TaskFinished(uint256 indexed taskId);
    /// @notice An account withdrew what it was owed in `token` (zero address: ETH).
    event Withdrawn(address indexed account, address indexed token, uint256 amount);
    /// @notice The owner withdrew the refunds of a task.
    event RefundWithdrawn(uint256 indexed taskId, address indexed owner, uint256 amount);

    // Each error's @notice is the one-line message the client shows for it (market/chain/client.py
    // reads it from the artifact's userdoc and fills the {placeholders} with the error's arguments).
    /// @notice unknown task {taskId}
    error MarketUnknownTask(uint256 taskId);
    /// @notice the aggregator cannot be the zero address
    error MarketZeroAggregator();
    /// @notice rounds must be between 1 and 10000 (got {rounds})
    error MarketBadRounds(uint256 rounds);
    /// @notice the submission and result windows must be at least 1 second
    error MarketBadWindows();
    /// @notice max trainers must be between 1 and 256 (got {maxTrainers})
    error MarketBadMaxTrainers(uint256 maxTrainers);
    /// @notice the reward {reward} does not fit in 128 bits
    error MarketRewardTooLarge(uint256 reward);
    /// @notice sent {sent} wei but the reward is {expected} wei
    error MarketWrongValue(uint256 expected, uint256 sent);
    /// @notice a reward of {reward} cannot fund {rounds} rounds (at least 1 wei per round)
    error MarketRewardTooSmall(uint256 reward, uint256 rounds);
    /// @notice task {taskId} has finished: every round is settled
    error MarketTaskFinished(uint256 taskId);
    /// @notice {account} already has another role in this task
    error MarketRoleConflict(address account);
    /// @notice {trainer} has already joined this task
    error MarketAlreadyJoined(address trainer);
    /// @notice the task is full ({maxTrainers} trainers)
    error MarketTaskFull(uint256 maxTrainers);
    /// @notice {trainer} has not joined this task (run `market trainer join` first)
    error MarketNotJoined(address trainer);
    /// @notice wrong round: the task is in round {expected}, not {given}
    error MarketWrongRound(uint256 expected, uint256 given);
    /// @notice too late: submissions for this round closed at unix time {deadline}
    error MarketSubmissionClosed(uint256 deadline);
    /// @notice {trainer} has already submitted an update for this round
    error MarketAlreadySubmitted(address trainer);
    /// @notice a CID of all zeros is not allowed
    error MarketZeroCid();
    /// @notice only the task's aggregator may post results ({caller} is not)
    error MarketNotAggregator(address caller);
    /// @notice only the task's owner may do this ({caller} is not)
    error MarketNotOwner(address caller);
    /// @notice submissions are still open until unix time {deadline}
    error MarketSubmissionsOpen(uint256 deadline);
    /// @notice too late: the result window closed at unix time {deadline}
    error MarketResultWindowClosed(uint256 deadline);
    /// @notice the aggregator may still post until unix time {deadline}
    error MarketResultWindowOpen(uint256 deadline);
    /// @notice expected {expected} basis-point entries (one per submitter), got {given}
    error MarketWrongLength(uint256 expected, uint256 given);
    /// @notice basis points sum to {sum}, not 10000
    error MarketBadBasisPoints(uint256 sum);
    /// @notice the result's proof does not verify
    error MarketInvalidProof();
    /// @notice round {round} has submissions: settle it instead of reclaiming
    error MarketRoundHasSubmissions(uint256 round);
    /// @notice nothing to withdraw
    error MarketNothingToWithdraw();

    // ------------------------------------------------------------------ owner

    /// @notice Create a task and escrow its reward: ETH (`token` zero, `amount` == msg.value)
    /// or an ERC-20 (`amount` pulled with transferFrom; what actually arrived is escrowed).
    /// @return taskId the new task's id (starting at 1)
    function createTask(TaskParams calldata p, address token, uint256 amount)
        external
        payable
        nonReentrant
        returns (uint256 taskId)
    {
        if (p.aggregator == address(0)) revert MarketZeroAggregator();
        if (p.aggregator == msg.sender) revert MarketRoleConflict(msg.sender);
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert MarketBadRounds(p.rounds);
        if (p.submitWindow == 0 || p.resultWindow == 0) revert MarketBadWindows();
        if (p.maxTrainers == 0 || p.maxTrainers > MAX_TRAINERS) revert MarketBadMaxTrainers(p.maxTrainers);
        if (p.initialModelCid == bytes32(0)) revert MarketZeroCid();

        uint256 received;
        if (token == address(0)) {
            if (msg.value != amount) revert MarketWrongValue(amount, msg.value);
            received = msg.value;
        } else {
            if (msg.value != 0) revert MarketWrongValue(0, msg.value);
            uint256 before = IERC20(token).balanceOf(address(this));
            IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
            received = IERC20(token).balanceOf(address(this)) - before;
        }
        // every round's pool must hold at least one unit
        if (received < p.rounds) revert MarketRewardTooSmall(received, p.rounds);
        if (received > type(uint128).max) revert MarketRewardTooLarge(received);

        taskId = ++_taskCount;
        Task storage t = _tasks[taskId];
        t.owner = msg.sender;
        t.createdBlock = uint32(block.number);
        t.aggregator = p.aggregator;
        t.rounds = p.rounds;
        t.token = token;
        t.submitWindow = p.submitWindow;
        t.resultWindow = p.resultWindow;
        t.maxTrainers = p.maxTrainers;
        t.verifier = p.verifier;
        t.roundOpenedAt = uint32(block.timestamp);
        t.reward = uint128(received);
        t.escrow = uint128(received);
        t.submissionsDigest = keccak256(abi.encode(taskId));
        t.latestModelCid = p.initialModelCid;
        t.specCid = p.specCid;
        t.validationCommitment = p.validationCommitment;
        emit TaskCreated(taskId, msg.sender, p.aggregator, token, received, p.rounds, p.specCid);
    }

    /// @notice The owner takes back every remaining pool when the current round has no
    /// submission and its submission window has closed (nobody is training any more).
    function reclaimUnused(uint256 taskId) external {
        Task storage t = _liveTask(taskId);
        if (msg.sender != t.owner) revert MarketNotOwner(msg.sender);
        uint256 deadline = _submitDeadline(t);
        if (block.timestamp < deadline) revert MarketSubmissionsOpen(deadline);
        if (_submittedCount(t) != 0) revert MarketRoundHasSubmissions(t.currentRound);

        uint256 amount = t.escrow;
        t.escrow = 0;
        t.refunded += uint128(amount);
        t.currentRound = t.rounds;
        emit TaskReclaimed(taskId, amount);
        emit TaskFinished(taskId);
    }

    /// @notice The owner withdraws every refund of `taskId` (remainders, unearned pools).
    function withdrawRefund(uint256 taskId) external nonReentrant {
        Task storage t = _existingTask(taskId);
        if (msg.sender != t.owner) revert MarketNotOwner(msg.sender);
        uint256 amount = t.refunded - t.refundsWithdrawn;
        if (amount == 0) revert MarketNothingToWithdraw();
        t.refundsWithdrawn = t.refunded;
        emit RefundWithdrawn(taskId, msg.sender, amount);
        _pay(t.token, payable(msg.sender), amount);
    }

    // ---------------------------------------------------------------- trainer

    /// @notice Join a task as a trainer (not as its owner or aggregator).
    function join(uint256 taskId) external {
        Task storage t = _liveTask(taskId);
        if (msg.sender == t.owner || msg.sender == t.aggregator) revert MarketRoleConflict(msg.sender);
        if (_trainerIndex[taskId][msg.sender] != 0) revert MarketAlreadyJoined(msg.sender);
        if (t.trainerCount >= t.maxTrainers) revert MarketTaskFull(t.maxTrainers);
        uint32 index = ++t.trainerCount;
        _trainerIndex[taskId][msg.sender] = index;
        _trainerAt[taskId][index] = msg.sender;
        emit TrainerJoined(taskId, msg.sender, index);
    }

    /// @notice Commit this round's update: the CID's sha2-256 digest and a commitment to it.
    function submitUpdate(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment) external {
        Task storage t = _liveTask(taskId);
        uint256 index = _trainerIndex[taskId][msg.sender];
        if (index == 0) revert MarketNotJoined(msg.sender);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        uint256 deadline = _submitDeadline(t);
        if (block.timestamp >= deadline) revert MarketSubmissionClosed(deadline);
        if (cid == bytes32(0)) revert MarketZeroCid();
        // round < rounds <= MAX_ROUNDS, so the tag round + 1 fits in 32 bits.
        uint256 tag = round + 1;
        (uint256 word, uint256 shift) = _tagPosition(index);
        uint256 tags = _submittedTags[taskId][word];
        if ((tags >> shift) & 0xffffffff == tag) revert MarketAlreadySubmitted(msg.sender);

        _submittedTags[taskId][word] = (tags & ~(uint256(0xffffffff) << shift)) | (tag << shift);
        if (t.countRound == round) {
            t.submittedCount += 1;
        } else {
            t.countRound = uint32(round);
            t.submittedCount = 1;
        }
        t.submissionsDigest = keccak256(abi.encode(t.submissionsDigest, index, cid, commitment));
        emit UpdateSubmitted(taskId, round, msg.sender, cid, commitment);
    }

    /// @notice Withdraw everything owed to the caller in `token` (zero address for ETH).
    function withdraw(address token) external nonReentrant {
        uint256 amount = _owed[token][msg.sender];
        if (amount == 0) revert MarketNothingToWithdraw();
        _owed[token][msg.sender] = 0;
        emit Withdrawn(msg.sender, token, amount);
        _pay(token, payable(msg.sender), amount);
    }

    // ------------------------------------------------------------- aggregator

    /// @notice Post the result of the current round and credit every submitter.
    /// @dev Allowed once submissions are closed (deadline passed, or the task's full trainer count,
    /// `maxTrainers`, submitted: never merely every trainer joined so far, or the first trainers
    /// to join could close every round alone) and before the result deadline. `bps` has one entry per submitter in join
    /// order and sums to 10,000, or to 0 when no update was acceptable (the pool is refunded).
    function postResult(
        uint256 taskId,
        uint256 round,
        bytes32 modelCid,
        bytes32 receiptCid,
        uint16[] calldata bps,
        bytes calldata proof
    ) external nonReentrant {
        Task storage t = _liveTask(taskId);
        if (msg.sender != t.aggregator) revert MarketNotAggregator(msg.sender);
        if (round != t.currentRound) revert MarketWrongRound(t.currentRound, round);
        _checkResultWindow(t);
        if (modelCid == bytes32(0) || receiptCid == bytes32(0)) revert MarketZeroCid();
        _checkBasisPoints(t, bps);
        if (t.verifier != address(0)) {
            bool ok = IRoundVerifier(t.verifier).verifyRound(
                taskId, round, t.submissionsDigest, modelCid, receiptCid, bps, proof
            );
            if (!ok) revert MarketInvalidProof();
        }

        uint256 credited = _creditByBps(t, taskId, round, bps);
        t.latestModelCid = modelCid;
        _settle(t, taskId, round, SETTLED_BY_RESULT, credited, modelCid, receiptCid);
    }

    // --------------------------------------------------------------- liveness

    /// @notice After the result deadline of the current round (its submission deadline plus the
    /// result window, even when the round closed early), anyone may settle it: an equal split
    /// among its submitters, or a refund to the owner if nobody submitted.
    function settleWithoutResult(uint256 taskId) external nonReentrant {
        Task storage t = _liveTask(taskId);
        uint256 round = t.currentRound;
        uint256 resultDeadline = _submitDeadline(t) + t.resultWindow;
        if (block.timestamp < resultDeadline) revert MarketResultWindowOpen(resultDeadline);

        if (_submittedCount(t) == 0) {
            _settle(t, taskId, round, SETTLED_BY_REFUND, 0, bytes32(0), bytes32(0));
        } else {
            uint256 credited = _creditEqually(t, taskId, round);
            _settle(t, taskId, round, SETTLED_BY_FALLBACK, credited, bytes32(0), bytes32(0));
        }
    }

    // ------------------------------------------------------------------ views

    /// @notice Number of tasks created so far (ids run from 1 to this).
    function taskCount() external view returns (uint256) {
        return _taskCount;
    }

    /// @notice Everything stored about a task.
    function getTask(uint256 taskId) external view returns (Task memory) {
        return _existingTask(taskId);
    }

    /// @notice Submitters of the current round in join order (the order `bps` follows).
    function getSubmitters(uint256 taskId) external view returns (address[] memory out) {
        Task storage t = _existingTask(taskId);
        out = new address[](_submittedCount(t));
        uint256 tag = uint256(t.currentRound) + 1;
        uint256 j = 0;
        for (uint256 i = 1; i <= t.trainerCount && j < out.length; ++i) {
            if (_submittedIn(taskId, i, tag)) out[j++] = _trainerAt[taskId][i];
        }
    }

    /// @notice A trainer's 1-based join index (0 if it has not joined).
    function trainerIndex(uint256 taskId, address trainer) external view returns (uint256) {
        return _trainerIndex[taskId][trainer];
    }

    /// @notice Deadlines of the current round: submissions close, then the result window closes.
    function deadlines(uint256 taskId) external view returns (uint256 submitDeadline, uint256 resultDeadline) {
        Task storage t = _existingTask(taskId);
        submitDeadline = _submitDeadline(t);
        resultDeadline = submitDeadline + t.resultWindow;
    }

    /// @notice The pool of `round` of `taskId`.
    function roundPool(uint256 taskId, uint256 round) external view returns (uint256) {
        Task storage t = _existingTask(taskId);
        if (round >= t.rounds) revert MarketWrongRound(t.rounds - 1, round);
        return _roundPool(t, round);
    }

    /// @notice What `account` can withdraw in `token` (zero address for ETH).
    function owed(address token, address account) external view returns (uint256) {
        return _owed[token][account];
    }

    // --------------------------------------------------------------- internal

    function _existingTask(uint256 taskId) private view returns (Task storage t) {
        t = _tasks[taskId];
        if (t.owner == address(0)) revert MarketUnknownTask(taskId);
    }

    function _liveTask(uint256 taskId) private view returns (Task storage t) {
        t = _existingTask(taskId);
        if (t.currentRound >= t.rounds) revert MarketTaskFinished(taskId);
    }

    function _submitDeadline(Task storage t) private view returns (uint256) {
        return uint256(t.roundOpenedAt) + t.submitWindow;
    }

    function _submittedCount(Task storage t) private view returns (uint256) {
        return t.countRound == t.currentRound ? t.submittedCount : 0;
    }

    /// @dev Pools as equal as integers allow: pool(r) = floor(reward*(r+1)/rounds) - floor(reward*r/rounds),
    /// which add up to exactly the reward (the sum telescopes). reward < 2**128 and rounds <= 10_000,
    /// so the products cannot overflow.
    function _roundPool(Task storage t, uint256 round) private view returns (uint256) {
        uint256 reward = t.reward;
        uint256 rounds = t.rounds;
        return (reward * (round + 1)) / rounds - (reward * round) / rounds;
    }

    /// @dev Submissions are closed (deadline passed, or `maxTrainers` trainers submitted: a round
    /// closes early only when it cannot take another update, not because the few trainers who
    /// joined so far have all submitted) and the result window is still open.
    function _checkResultWindow(Task storage t) private view {
        uint256 submitDeadline = _submitDeadline(t);
        if (block.timestamp < submitDeadline && _submittedCount(t) < t.maxTrainers) {
            revert MarketSubmissionsOpen(submitDeadline);
        }
        uint256 resultDeadline = submitDeadline + t.resultWindow;
        if (block.timestamp >= resultDeadline) revert MarketResultWindowClosed(resultDeadline);
    }

    /// @dev One entry per submitter of the round, summing to BPS, or to 0 (nothing acceptable).
    function _checkBasisPoints(Task storage t, uint16[] calldata bps) private view {
        uint256 n = _submittedCount(t);
        if (bps.length != n) revert MarketWrongLength(n, bps.length);
        uint256 sum = 0;
        for (uint256 i = 0; i < bps.length; ++i) {
            sum += bps[i];
        }
        if (sum != BPS && sum != 0) revert MarketBadBasisPoints(sum);
    }

    function _tagPosition(uint256 index) private pure returns (uint256 word, uint256 shift) {
        word = (index - 1) >> 3;
        shift = ((index - 1) & 7) * 32;
    }

    function _submittedIn(uint256 taskId, uint256 index, uint256 tag) private view returns (bool) {
        (uint256 word, uint256 shift) = _tagPosition(index);
        return (_submittedTags[taskId][word] >> shift) & 0xffffffff == tag;
    }

    /// @dev Credit `pool * bps[j] / BPS` (rounded down) to the j-th submitter of the round,
    /// submitters being the joined trainers, in join order, whose tag is this round's.
    function _creditByBps(Task storage t, uint256 taskId, uint256 round, uint16[] calldata bps)
        private
        returns (uint256 credited)
    {
        uint256 pool = _roundPool(t, round);
        uint256 n = bps.length;
        uint256 tag = round + 1;
        address token = t.token;
        uint256 count = t.trainerCount;
        uint256 j = 0;
        for (uint256 i = 1; i <= count && j < n; ++i) {
            if (!_submittedIn(taskId, i, tag)) continue;
            // pool < 2**128 and bps[j] <= 10_000, so the product cannot overflow.
            uint256 amount = (pool * bps[j]) / BPS;
            ++j;
            if (amount == 0) continue;
            address trainer = _trainerAt[taskId][i];
            _owed[token][trainer] += amount;
            credited += amount;
            emit TrainerCredited(taskId, round, trainer, amount);
        }
    }

    /// @dev Credit `pool / n` to each of the round's n submitters.
    function _creditEqually(Task storage t, uint256 taskId, uint256 round) private returns (uint256 credited) {
        uint256 n = _submittedCount(t);
        uint256 share = _roundPool(t, round) / n;
        if (share == 0) return 0;
        uint256 tag = round + 1;
        address token = t.token;
        uint256 count = t.trainerCount;
        uint256 j = 0;
        for (uint256 i = 1; i <= count && j < n; ++i) {
            if (!_submittedIn(taskId, i, tag)) continue;
            ++j;
            address trainer = _trainerAt[taskId][i];
            _owed[token][trainer] += share;
            credited += share;
            emit TrainerCredited(taskId, round, trainer, share);
        }
    }

    function _settle(
        Task storage t,
        uint256 taskId,
        uint256 round,
        uint8 mode,
        uint256 credited,
        bytes32 modelCid,
        bytes32 receiptCid
    ) private {
        uint256 pool = _roundPool(t, round);
        // credited <= pool: every share is rounded down and the shares sum to at most the pool.
        uint256 refund = pool - credited;
        t.escrow -= uint128(pool);
        t.credited += uint128(credited);
        t.refunded += uint128(refund);
        emit RoundSettled(taskId, round, mode, credited, refund, t.submissionsDigest, modelCid, receiptCid);
        uint32 next = uint32(round + 1);
        t.currentRound = next;
        t.roundOpenedAt = uint32(block.timestamp);
        if (next >= t.rounds) emit TaskFinished(taskId);
    }

    function _pay(address token, address payable to, uint256 amount) private {
        if (token == address(0)) {
            Address.sendValue(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }
}
